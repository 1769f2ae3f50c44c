"""Playwright fixtures driving Debian's Chromium (the Playwright browser download does not
work here): a session-wide ``browser``, a fresh ``context``/``page`` per test, and a
screenshot in ``test-artifacts/`` when a test fails."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bff.app import create_app
from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs, make_settings
from tests.servers import live_server
from tests.waiting import poll

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser(playwright_driver: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    # headless=False: Playwright adds no headless flag of its own, ``--headless=new``
    # above decides. Plain launch(): Playwright gives it a fresh temporary profile.
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=False, args=CHROMIUM_ARGS, timeout=60_000
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (empty cookies and storage), English-speaking on purpose:
    a French UI then proves our configuration chose French, not the browser's locale."""
    ctx = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any, request: pytest.FixtureRequest) -> Generator[Any, None, None]:
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        save_screenshot(page, request.node.nodeid)


def save_screenshot(page: Any, name: str) -> Path | None:
    """Save a full-page screenshot to ``test-artifacts/<name>.png`` (best effort)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
    try:
        page.screenshot(path=str(path), full_page=True, timeout=10_000)
    except Exception:  # the page may be gone; a missing screenshot must not hide the failure
        return None
    return path


@pytest.fixture(scope="module")
def viewer_url(pacs: Pacs) -> Iterator[str]:
    """A BFF in open access (the facade's own tests) over the session's Orthanc, one per
    test module; the study under test is loaded into that Orthanc by the module."""
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")
    with live_server(create_app(make_settings(pacs.dicomweb_url))) as url:
        yield url


#: Records, in the page, every fetch() it makes and when the page has handled its answer:
#: the body read (or left unread) and the callbacks chained on it run. A macrotask queued
#: once the answer (or its body) is in runs after every promise callback of that moment,
#: so "handled" means the page's own code has acted on the answer. Installed before the
#: page's scripts by record_fetches().
RECORD_FETCHES = """
(() => {
  const fetches = (window.__drimboxFetches = []);
  const original = window.fetch;
  window.fetch = function (input, init) {
    const entry = { url: String((input && input.url) || input), handled: false };
    fetches.push(entry);
    const done = () => setTimeout(() => { entry.handled = true; }, 0);
    return original.apply(this, arguments).then((response) => {
      let reading = null;
      for (const read of ['json', 'text', 'arrayBuffer', 'blob']) {
        const own = response[read].bind(response);
        response[read] = () => { reading = own(); reading.then(done, done); return reading; };
      }
      setTimeout(() => { if (!reading) done(); }, 0);
      return response;
    }, (error) => { done(); throw error; });
  };
})();
"""
ANSWERED = """([fragment, atLeast]) => {
  const mine = (window.__drimboxFetches || []).filter((f) => f.url.includes(fragment));
  return mine.length >= atLeast && mine.every((f) => f.handled);
}"""


def record_fetches(page: Any) -> None:
    """Record the page's fetches from its next navigation on (see wait_answered)."""
    page.add_init_script(RECORD_FETCHES)


def wait_answered(page: Any, fragment: str, at_least: int = 1, timeout: float = 30) -> None:
    """Wait until the page has fetched a URL containing ``fragment`` (``at_least`` times)
    and handled every such answer: what it decides from them is decided by then."""
    done = poll(lambda: page.evaluate(ANSWERED, [fragment, at_least]), timeout)
    assert done, (fragment, page.evaluate("window.__drimboxFetches || []"))
