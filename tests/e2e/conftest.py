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
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # headless=False: Playwright adds no headless flag of its own, ``--headless=new``
        # above decides. Plain launch(): Playwright gives it a fresh temporary profile.
        browser = playwright.chromium.launch(
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
