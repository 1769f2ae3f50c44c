"""The Consumer in Chromium: a KOS handed over by the Consumer DRIMbox opens the viewer,
images stream from the Source (this project) over mutual TLS with a visible progress
(DB.VI-CS.17, .18), and a Source error shows its code and French message in the viewer
itself (DB.VI-CO.27)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bff.origins.errors import MESSAGES
from bff.services import services_of
from bff.settings import PROJECT_ROOT
from tests.access import LoopbackTransport, psc_access_token
from tests.consumer_stack import DrimmStack, fake_source_app, mtls, source_requests
from tests.e2e.test_series_rules import THUMBNAIL, shown, thumbnails
from tests.e2e.test_viewer import wait_for_image
from tests.e2e.test_viewer_errors import come_back, shot
from tests.integration import test_consumer_key_images as kin_data
from tests.integration.test_consumer_key_images import KinExam
from tests.servers import live_server
from tests.waiting import poll

pytestmark = pytest.mark.e2e

#: The exam with a Key Image Note of the integration tests (their fixture "exam").
kin_exam = kin_data.exam


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def handover(
    drimm: DrimmStack, kos: bytes, *, series: str | None = None, token: str | None = None
) -> str:
    """What the Consumer DRIMbox does server side: hand the KOS over (at series level with
    ``series``), get the one-time URL."""
    with httpx.Client(transport=LoopbackTransport(), timeout=30) as client:
        answer = client.post(
            drimm.consumer_url + "/api/consumer/kos",
            params={"series": series} if series else {},
            content=kos,
            headers={
                "Authorization": f"Bearer {drimm.handover_secret}",
                "X-PSC-Access-Token": token or psc_access_token(drimm.stack),
                "Content-Type": "application/dicom",
            },
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["viewer_url"])


def test_consumer_shows_images_with_progress(drimm: DrimmStack, page: Any) -> None:
    drimm.fake.mode = "ok"
    page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    progress = page.locator("#drimbox-progress")
    progress.wait_for(state="attached", timeout=30_000)
    page.wait_for_function(
        "() => (document.querySelector('#drimbox-progress') || {}).textContent"
        " && document.querySelector('#drimbox-progress').textContent.includes('/ 40 images')",
        timeout=30_000,
    )
    assert "Téléchargement des images" in progress.text_content()
    page.get_by_role("button", name="Voir les images").click()
    wait_for_image(page)


def test_consumer_pages_fetch_the_viewer_ahead(drimm: DrimmStack, page: Any) -> None:
    """Issue 5, DB.VI-CO.39: the browser on the Consumer's own page (the spec's test starts
    there, signed in) already fetches OHIF's boot files, so opening an exam does not wait
    for 5 MB of bundles on a slow link."""
    fetched: list[str] = []
    page.on("requestfinished", lambda r: fetched.append(r.url.rsplit("/", 1)[-1]))
    page.goto(drimm.consumer_url + "/consumer")
    assert page.get_by_role("button", name="Se connecter avec Pro Santé Connect").is_visible()
    page.wait_for_load_state("networkidle")
    assert any(name.startswith("app.bundle.") for name in fetched), fetched
    head = page.evaluate("() => document.head.innerHTML")
    assert head.count('rel="prefetch"') >= 40


@contextmanager
def source_failing_with(drimm: DrimmStack, family: str) -> Iterator[str]:
    """The base URL of a Source (for the KOS's RetrieveURLs) that fails as ``family``
    says; a real peer each time: the stand-in Source speaking HTTPS, or no whitelisted one."""
    if family == "TLS":  # a server certificate that does not chain to the CA bundle
        options = mtls(drimm.pki["untrusted_server"], drimm.pki["client"].ca_cert)
        options["ssl_cert_reqs"] = ssl.CERT_NONE
        port = drimm.spare_ports[1]
        drimm.fake.mode = "ok"
        with live_server(
            fake_source_app(drimm.study, drimm.fake), port=port, lifespan="off", **options
        ):
            yield f"https://localhost:{port}/api/source"
        return
    if family == "whitelist":  # a host no whitelist entry names: nothing is sent
        yield drimm.fake_api().replace("https://localhost:", "https://127.0.0.1:")
        return
    drimm.fake.mode = {
        "connection, mid-series": "drop",
        "status": "status:410",
        "conformance": "sop_class",
    }[family]
    yield drimm.fake_api()


@pytest.mark.parametrize(
    ("family", "code"),
    [
        ("connection, mid-series", "E201"),
        ("TLS", "E202"),
        ("whitelist", "E203"),
        ("status", "E206"),
        ("conformance", "E301"),
    ],
)
def test_each_tableau_2_family_shows_its_code_and_message_in_the_viewer(
    drimm: DrimmStack, page: Any, family: str, code: str
) -> None:
    """DB.VI-CO.27 (issue 14 item 3): for each family of Tableau 2, the radiologist sees
    the code and its French message in the viewer: in the progress box around OHIF, per
    series (the connection drops in the middle of the axial series: E201, not E506), or,
    for a Source the whitelist refuses (nothing of the exam can come), on the page
    opened in the viewer's place."""
    with source_failing_with(drimm, family) as base:
        page.goto(handover(drimm, drimm.kos_for(base)))
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
        if family == "whitelist":
            shown = page.locator("main")
            shown.get_by_text(f"Code d'erreur : {code}").wait_for(timeout=30_000)
            assert MESSAGES[code] in (shown.text_content() or "")
            return
        alert = page.locator("#drimbox-progress .drimbox-error").first
        alert.wait_for(timeout=30_000)
        text = alert.text_content() or ""
    assert f"{code} : {MESSAGES[code]}" in text, text


def test_non_diagnostic_mention_follows_the_device_status_and_the_images(
    drimm: DrimmStack, page: Any
) -> None:
    """DB.VI-CS.26: the mention shows unless the deployment is a medical device AND the
    images shown are lossless (the Consumer serves the Source's JPEG-LS as received)."""
    settings = services_of(drimm.consumer_app).settings
    mention_hidden = (
        "() => { const m = document.querySelector('#drimbox-mention'); return !!m && m.hidden; }"
    )
    mention_shown = (
        "() => { const m = document.querySelector('#drimbox-mention'); return !!m && !m.hidden; }"
    )
    # Not a medical device: always shown, lossless or not.
    page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
    page.wait_for_function(mention_shown, timeout=30_000)
    page.wait_for_function(
        "() => (document.querySelector('#drimbox-progress') || {}).textContent"
        " && document.querySelector('#drimbox-progress').textContent.includes('terminé')",
        timeout=30_000,
    )
    assert page.evaluate(mention_shown)
    # Lossless images: the mention gives the true reason, not "avec perte".
    text = page.locator("#drimbox-mention").text_content() or ""
    assert "dispositif médical" in text and "perte" not in text, text
    # A medical device showing lossless images: the mention goes away.
    object.__setattr__(settings, "medical_device", True)  # frozen settings, test only
    try:
        page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
        page.wait_for_function(mention_hidden, timeout=30_000)
    finally:
        object.__setattr__(settings, "medical_device", False)


def test_consumer_serves_lossy_images_when_configured(drimm: DrimmStack, page: Any) -> None:
    """DRIMBOX_CONSUMER_IMAGES=lossy (issue 5: a slow link to the radiologist's browser):
    the frames are transcoded like the Source viewer's, and the non-diagnostic mention
    shows even on a medical device (DB.VI-CS.26)."""
    settings = services_of(drimm.consumer_app).settings
    frames: list[str] = []
    page.on(
        "response",
        lambda r: frames.append(r.headers.get("content-type", "")) if "/frames/" in r.url else None,
    )
    object.__setattr__(settings, "medical_device", True)  # frozen settings, test only
    object.__setattr__(settings, "consumer_images", "lossy")
    try:
        page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
        page.wait_for_function(
            "() => { const m = document.querySelector('#drimbox-mention');"
            " return !!m && !m.hidden; }",
            timeout=30_000,
        )
        wait_for_image(page)
    finally:
        object.__setattr__(settings, "medical_device", False)
        object.__setattr__(settings, "consumer_images", "lossless")
    assert frames and all("transfer-syntax=1.2.840.10008.1.2.4.81" in t for t in frames), frames


def test_consumer_shows_the_key_images_first_each_marked(
    kin_exam: KinExam, drimm: DrimmStack, page: Any
) -> None:
    """DB.VI-CO.197 in Chromium: a manifest whose KO series holds a Key Image Note opens
    on the key images, on their own, each marked "Image clé" (tests/integration/
    test_consumer_key_images.py checks the DICOMweb answers behind it)."""
    page.goto(handover(drimm, kin_exam.manifest))
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    overlay = shown(page, "Images clés")
    assert "Coupe : 1/2" in overlay["bottomRight"], overlay
    assert "Image clé" in overlay["topRight"], overlay


def test_a_kos_file_opened_by_hand_in_chromium(drimm: DrimmStack, page: Any, tmp_path: Any) -> None:
    """The opening form as Chromium sends it (multipart/form-data, a non-ASCII file
    name) is read by our own bounded parser, off the event loop (issue 13), and opens
    the exam (DB.VI-CS.05)."""
    drimm.fake.mode = "ok"
    kos = tmp_path / "KOS de l'examen é.dcm"
    kos.write_bytes(drimm.kos_for(drimm.source_api))
    page.goto(drimm.consumer_url + "/consumer")
    page.click("button[data-provider=psc]")
    page.fill("input[name=username]", "dr.radiologue")
    page.keyboard.press("Enter")
    page.wait_for_selector("input[name=kos]", timeout=30_000)
    page.set_input_files("input[name=kos]", str(kos))
    page.locator("form[enctype='multipart/form-data'] button[type=submit]").click()
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    wait_for_image(page)


def test_a_session_end_on_the_consumer_points_back_to_its_page(
    drimm: DrimmStack, page: Any
) -> None:
    """Issue 14: the radiologist's session on the Consumer ends while the viewer is open
    (here revoked, as a logout elsewhere does): the viewer says so in French over the
    images, and sends back to the Consumer DRIMbox's page, where the exam is opened."""
    drimm.fake.mode = "ok"
    page.goto(handover(drimm, drimm.kos_for(drimm.source_api)))
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
    page.get_by_role("dialog", name="Identité du patient").wait_for(timeout=30_000)
    csrf = page.evaluate("() => fetch('/api/session').then((r) => r.json()).then((i) => i.csrf)")
    sessions = services_of(drimm.consumer_app).sessions
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == sessions.cookie_name)
    session = sessions.load(cookie, touch=False)
    assert session is not None and session.csrf_token == csrf
    sessions.delete(session)
    come_back(page)
    cover = page.get_by_role("alertdialog", name="Votre session a pris fin")
    cover.wait_for(timeout=30_000)
    assert "DRIMbox Consommatrice" in cover.inner_text() and "E401" in cover.inner_text()
    shot(page, "session-ended-consumer")
    cover.get_by_role("link", name="Revenir à la DRIMbox Consommatrice").click()
    page.wait_for_url("**/consumer", timeout=30_000)
    assert page.get_by_role("button", name="Se connecter avec Pro Santé Connect").is_visible()


#: OHIF 3.13.2's study prefetcher (app bundle, StudyPrefetcherService): once the display
#: sets on screen are loaded, it would send the requests of the others it chose; null
#: until then, else how many it still holds or has in flight.
PREFETCH_LEFT = """() => {
  const prefetcher = window.services && window.services.studyPrefetcherService;
  if (!prefetcher || !prefetcher._areActiveDisplaySetsLoaded()) return null;
  return prefetcher._pendingRequests.length + prefetcher._inflightRequests.size;
}"""


def test_a_series_level_opening_shows_that_series_and_lists_the_others(
    drimm: DrimmStack, page: Any
) -> None:
    """DB.VI-CS.05 (issue 14 item 4), as the radiologist sees it: opened on the axial
    series (not the one OHIF would show first, the topogram: lowest number), the viewport
    shows it and the series tree still lists the topogram (.06), which the Consumer does
    not pull from the Source until the user displays it; double-clicking its thumbnail
    shows it, and only then is it pulled. Requests counted as the Consumer sends them to
    the real Source with this session's token."""
    study = drimm.study
    topogram, chosen = study.series_uids
    token = psc_access_token(drimm.stack)
    source = urlsplit(drimm.source_api).path + f"/studies/{study.study_uid}/series/"
    with source_requests(drimm, token) as asked:
        page.goto(handover(drimm, drimm.kos_for(drimm.source_api), series=chosen, token=token))
        page.wait_for_url(f"**initialSeriesInstanceUID={chosen}", timeout=30_000)
        page.get_by_role("button", name="Voir les images").click(timeout=30_000)
        assert "Série : 2" in shown(page, "Thorax-abdomen")["topLeft"]
        found = thumbnails(page, 2)
        assert [t["series"] for t in found] == ["1", "2"], found
        assert "Topogramme" in found[0]["text"] and "Thorax-abdomen" in found[1]["text"]
        # Once the series on screen is loaded, OHIF prefetches no other series...
        assert poll(lambda: page.evaluate(PREFETCH_LEFT) is not None, 30)
        assert page.evaluate(PREFETCH_LEFT) == 0
        # ... and the Consumer pulled that series only (the topogram's thumbnail: its one
        # instance, alone).
        assert source + chosen in asked
        assert source + topogram not in asked, asked
        page.wait_for_function(
            "(text) => (document.querySelector('#drimbox-progress') || {}).textContent"
            "  && document.querySelector('#drimbox-progress').textContent.includes(text)",
            arg="Topogramme : téléchargée quand vous affichez la série",
            timeout=30_000,
        )
        # The user displays the topogram: now it is pulled.
        page.locator(f'{THUMBNAIL}[data-series="1"]').dblclick()
        assert "Série : 1" in shown(page, "Topogramme")["topLeft"]
        assert poll(lambda: source + topogram in asked, 30), asked
