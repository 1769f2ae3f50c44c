"""The boot service worker (bff/web/boot.py, issue 5: DB.VI-SO.37 / DB.VI-CO.39 first
image): installed by the page shown before the viewer, it holds OHIF's boot files in
CacheStorage (compiled by Chromium as they are cached) and the viewer loads them from
there; it never sees nor keeps anything else (no DICOMweb, no API answer, no patient data
in the browser's storage)."""

from __future__ import annotations

from typing import Any

import pytest

from bff.settings import PROJECT_ROOT
from bff.web.boot import CACHE_PREFIX, load_boot_files
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.source_stack import SourceStack

pytestmark = pytest.mark.e2e

READY_JS = """async () => {
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 20000));
  const registration = await Promise.race([navigator.serviceWorker.ready, timeout]);
  return registration ? registration.scope : null;
}"""

CACHED_JS = """async () => {
  const out = {};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    out[name] = (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search);
  }
  return out;
}"""

#: Per request of the page: path, where the answer came from ('cache-storage': the
#: worker's cache), and the worker's static route it matched ('network': sent to the
#: network by the browser without running the worker).
TIMINGS_JS = """() => performance.getEntriesByType('resource').map((e) => [
  new URL(e.name).pathname, e.deliveryType, e.workerMatchedSourceType])"""


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def test_the_viewer_boots_from_the_worker_the_profile_page_installed(
    source: SourceStack, page: Any
) -> None:
    boot = {
        "/" + name
        for name in load_boot_files(PROJECT_ROOT / "ohif-config", PROJECT_ROOT / "ohif-dist")
    }
    assert any(name.startswith("/app.bundle.") for name in boot)
    origin = source.link().split("/IHE")[0]

    page.goto(source.link())
    page.get_by_text("Accès à votre examen d'imagerie").wait_for()
    assert page.evaluate(READY_JS) == origin + "/"
    cached = page.evaluate(CACHED_JS)
    assert list(cached) == [next(iter(cached))] and next(iter(cached)).startswith(CACHE_PREFIX)
    assert set(next(iter(cached.values()))) == boot

    sign_in(page, source.link(), "fcp", "dominique.pat-trois")
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    page.get_by_role("button", name="Voir les images").click()
    wait_for_image(page)

    timings = page.evaluate(TIMINGS_JS)
    from_cache = {path for path, delivery, _ in timings if delivery == "cache-storage"}
    # OHIF's boot files came from the worker's cache ...
    assert any(path.startswith("/app.bundle.") for path in from_cache)
    assert {path for path, _, _ in timings} & boot <= from_cache
    # ... and nothing else did: images, metadata and the API go straight to the network
    # (the browser's static route, the worker does not even run for them).
    assert not from_cache - boot, from_cache - boot
    api = [(path, route) for path, _, route in timings if path.startswith(("/dicomweb/", "/api/"))]
    assert any("/frames/" in path for path, _ in api)
    assert all(route == "network" for _, route in api), [a for a in api if a[1] != "network"]
    # The browser's storage holds OHIF's code only, never an answer about the patient.
    after = page.evaluate(CACHED_JS)
    assert all(set(paths) <= boot for paths in after.values()), after
