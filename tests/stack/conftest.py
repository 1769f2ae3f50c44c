"""The production-like stack (tests/production_stack.py), started once for the module, and Chromium
pointed at it: the stack's names resolved to this machine, the balancer's certificate
trusted by its public key only."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, save_screenshot
from tests.integration.pg import find_bin_dir, temporary_postgres
from tests.production_stack import NGINX, Stack, running_stack


@pytest.fixture(scope="module")
def stack(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not NGINX.exists():
        pytest.skip("nginx is not installed (scripts/install installs it)")
    if find_bin_dir() is None or shutil.which("Orthanc") is None:
        pytest.skip("PostgreSQL or Orthanc is not installed (scripts/install installs them)")
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")
    work = tmp_path_factory.mktemp("stack")
    with (
        temporary_postgres(work / "postgres") as database_url,
        running_stack(
            work / "stack",
            pacs.study,
            pacs.dicomweb_url,
            database_url,
        ) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def stack_browser(stack: Stack, playwright_driver: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=False,
        args=[*CHROMIUM_ARGS, *stack.chromium_args()],
        timeout=60_000,
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def stack_page(stack_browser: Any, request: pytest.FixtureRequest) -> Generator[Any, None, None]:
    """One browser context for the module: the tests follow one person's viewing (signed
    in once, then replicas killed and restarted under it)."""
    context = stack_browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        yield page
    finally:
        if request.session.testsfailed:
            save_screenshot(page, f"{request.node.nodeid}-last")
        context.close()
