"""What the Source viewer says in Chromium when something fails around the images (issue
14), in French with its stable code, inside the viewer: the PACS going away mid-viewing,
a PACS too slow or answering garbage (DB.VI-SO.28: what happened, and the site that
produced the exam to contact, named from the KOS); the session ending while the viewer
is open (said over the images, how to open the exam again, the logout at the provider);
and the patient-id mismatch refused before the viewer opens (DB.SO.47).

The PACS is the real Orthanc behind a real HTTP server (:class:`FaultyPacs`) that
forwards every request as it is, and only holds or spoils the image streams: what a real
Orthanc cannot be made to do on demand. "The PACS is gone" is that server stopped: its
port closed, as a PACS that went down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bff.archive.store import ArchiveStore
from bff.demo.dataset import DemoStudy
from bff.errors import (
    AuthenticationRequired,
    PatientIdMismatch,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bff.services import services_of
from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.source_stack import LOCATION, OTHER_CDA_ID, SourceStack, running_source
from tests.waiting import poll

pytestmark = pytest.mark.e2e

SITE = "Centre de radiologie Ambroise"  # the demo KOS's Institution Name
CONTACT = "prenez contact avec le site qui a réalisé l'examen : " + SITE
SERIES_RETRIEVE = re.compile(r"/dicom-web/studies/[0-9.]+/series/[0-9.]+")
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


class FaultyPacs:
    """The real Orthanc behind a real TCP server speaking its HTTP: each request is
    relayed to Orthanc as it is (one request per connection), except the series
    retrievals (the image streams), answered per ``mode``: ``hold`` (no answer: until
    the BFF gives up, or the PACS goes down), ``garbage`` (a multipart answer that is
    not one). :meth:`go_down` is a PACS going down: its port closed, the connections it
    held reset. ``held`` is set when an image stream is being held."""

    def __init__(self, orthanc_url: str, mode: str) -> None:
        parts = urlsplit(orthanc_url)
        self._orthanc = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode = mode
        self.held = threading.Event()
        self._holding: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]
        if SERIES_RETRIEVE.fullmatch(target) and self.mode == "hold":
            self._holding.append(writer)
            self.held.set()
            return
        if SERIES_RETRIEVE.fullmatch(target) and self.mode == "garbage":
            writer.write(GARBAGE_ANSWER)
        else:
            await self._relay(head, writer)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _relay(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        """One GET to Orthanc, its answer back as it comes (Connection: close both ways)."""
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._orthanc)
        head = re.sub(rb"(?im)^connection:[^\r]*\r\n", b"", head)
        upstream_writer.write(head[:-2] + b"Connection: close\r\n\r\n")
        while chunk := await upstream_reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        upstream_writer.close()

    def go_down(self) -> None:
        async def down() -> None:
            self._server.close()
            for writer in self._holding:
                writer.transport.abort()  # reset, without an answer
            self._holding.clear()

        self._run(down())

    def close(self) -> None:
        async def settle() -> None:  # relays still running when a test failed early
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        self.go_down()
        self._run(settle())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


#: An answer to the image stream that says multipart but is not one.
GARBAGE_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b'Content-Type: multipart/related; type="application/dicom"; boundary=drimbox\r\n'
    b"Connection: close\r\n\r\n"
    + b"--drimbox\r\nContent-Type: application/dicom\r\n\r\nnot DICOM\r\n"
    * 3
)


def shot(page: Any, name: str) -> None:
    """With DRIMBOX_SCREENSHOTS=<dir>, keep what the user sees (docs, reviews)."""
    folder = os.environ.get("DRIMBOX_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"ux-errors-{name}.png"))


def come_back(page: Any) -> None:
    """The user comes back to the viewer's tab. Headless Chromium keeps every tab focused
    and visible (bring_to_front() fires nothing), so the page gets the event a browser
    fires then."""
    page.bring_to_front()
    page.evaluate("() => window.dispatchEvent(new FocusEvent('focus'))")


def open_viewer(page: Any, source: SourceStack, provider: str, username: str) -> None:
    sign_in(page, source.link(), provider, username)
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)


def notice_text(page: Any) -> str:
    notice = page.locator("#drimbox-notice")
    notice.wait_for(state="visible", timeout=60_000)
    assert notice.get_attribute("role") == "alert"
    return str(notice.inner_text())


@pytest.fixture
def faulty_source(
    pacs: Pacs, other_study: DemoStudy, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[SourceStack, FaultyPacs]]:
    """A Source whose location's PACS is a FaultyPacs (``request.param``: its mode and
    settings)."""
    mode, overrides = request.param
    fault = FaultyPacs(pacs.process.base_url, mode)
    try:
        with running_source(
            pacs, other_study, tmp_path, pacs_url=fault.url + "/dicom-web", **overrides
        ) as source:
            yield source, fault
    finally:
        fault.close()


HOLD = ("hold", {"frame_wait_timeout": 120.0})


@pytest.mark.parametrize("faulty_source", [HOLD], indirect=True)
def test_the_pacs_gone_mid_viewing_is_said_with_its_code_and_the_site(
    faulty_source: tuple[SourceStack, FaultyPacs], page: Any
) -> None:
    """DB.VI-SO.28: the viewer shows the exam (its series listed), the images on their
    way, and the PACS goes down (connections reset, port closed). Inside the viewer:
    E503, what happened, and the site to contact, by name; never an access refusal."""
    source, fault = faulty_source
    open_viewer(page, source, "fcp", "dominique.pat-trois")
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    page.get_by_text("Thorax-abdomen").first.wait_for(timeout=30_000)  # OHIF has the exam
    assert fault.held.wait(30), "the image stream never reached the PACS"
    fault.go_down()
    text = notice_text(page)
    assert "E503" in text and UpstreamUnavailable.message in text, text
    assert CONTACT in text, text
    assert "E420" not in text and "E425" not in text
    # The progress box says it series by series, with the same invitation.
    progress = page.locator("#drimbox-progress")
    page.wait_for_function(
        "() => (document.querySelector('#drimbox-progress') || {}).textContent"
        " && document.querySelector('#drimbox-progress').textContent.includes('E503')",
        timeout=30_000,
    )
    assert CONTACT in progress.inner_text()
    shot(page, "pacs-down")


@pytest.mark.parametrize("faulty_source", [HOLD], indirect=True)
def test_the_pacs_gone_before_ohif_asks_is_said_over_its_english_page(
    faulty_source: tuple[SourceStack, FaultyPacs], page: Any
) -> None:
    """DB.VI-SO.28: the PACS goes down between the grant and OHIF's first question:
    OHIF gives up on the exam with an English page (hard-coded in 3.13.2); the viewer
    covers it with a French one: E503, the site to contact, and "Réessayer"."""
    source, fault = faulty_source
    sign_in(page, source.link(), "fcp", "dominique.pat-trois")
    assert fault.held.wait(30), "the grant did not start the image streams"
    fault.go_down()  # before the browser has even loaded the viewer
    page.wait_for_url("**/notfoundstudy", timeout=60_000)
    cover = page.get_by_role("alert").filter(has_text="ne peut pas être affiché")
    cover.wait_for(timeout=30_000)
    text = cover.inner_text()
    assert "E503" in text and UpstreamUnavailable.message in text, text
    assert CONTACT in text, text
    assert page.evaluate(COVERS_THE_VIEWER.replace("drimbox-session-end", "drimbox-unavailable"))
    assert cover.get_by_role("button", name="Réessayer").is_visible()
    shot(page, "pacs-down-at-opening")


@pytest.mark.parametrize(
    ("faulty_source", "error"),
    [
        (("garbage", {}), UpstreamProtocolError),
        (("hold", {"upstream_read_timeout": 2.0}), UpstreamTimeout),
    ],
    indirect=["faulty_source"],
    ids=["malformed", "timeout"],
)
def test_a_pacs_answering_garbage_or_too_slowly_is_said_as_such(
    faulty_source: tuple[SourceStack, FaultyPacs],
    error: type[UpstreamProtocolError | UpstreamTimeout],
    page: Any,
) -> None:
    """DB.VI-SO.28: an image stream that is not a multipart answer (E505), or that does
    not come within the configured timeout (E504): said as what it is, in the viewer."""
    source, _ = faulty_source
    open_viewer(page, source, "psc", "dr.radiologue")
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    text = notice_text(page)
    assert error.code in text and error.message in text, text
    assert CONTACT in text, text
    shot(page, error.code)


def test_a_session_ended_in_another_tab_is_said_over_the_images(
    source: SourceStack, context: Any, page: Any
) -> None:
    """Issue 14: the patient logs out in another tab of the same browser; coming back to
    the viewer, she reads that the session ended (E401), over the images (hidden), how to
    open the exam again (her report link), and the images are no longer served."""
    open_viewer(page, source, "fcp", "dominique.pat-trois")
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    wait_for_image(page)
    frame_url = poll(lambda: page.evaluate(LAST_FRAME_URL), 30)
    assert frame_url, "no frame was asked"
    other = context.new_page()
    other.goto(page.url)
    other.get_by_role("button", name="Se déconnecter").click(timeout=30_000)
    other.wait_for_url("**/auth/logged-out", timeout=30_000)
    come_back(page)
    cover = page.get_by_role("alertdialog", name="Votre session a pris fin")
    cover.wait_for(timeout=30_000)
    text = cover.inner_text()
    assert "rouvrez le lien figurant dans votre compte rendu" in text, text
    assert "E401" in text
    assert page.evaluate(COVERS_THE_VIEWER), "the images are still visible"
    shot(page, "session-ended")
    # What OHIF may still ask is refused at once, with nothing of the exam.
    status, body = page.evaluate(ASK_AS_OHIF, [frame_url, FRAME_ACCEPT])
    assert status == 401
    assert body == {"code": "E401", "message": AuthenticationRequired.message}


def test_an_idle_session_is_said_and_still_logged_out_at_the_provider(
    source: SourceStack, page: Any
) -> None:
    """Issue 14: the professional leaves the viewer idle past the limit; back on its tab,
    the viewer says the session ended and how to open the exam again, and its logout
    still ends the session at ProSantéConnect (RP-initiated logout)."""
    open_viewer(page, source, "psc", "dr.radiologue")
    page.get_by_role("button", name="Voir les images").click(timeout=30_000)
    wait_for_image(page)
    csrf = page.evaluate(
        "() => fetch('/api/session').then((r) => r.json()).then((info) => info.csrf)"
    )
    sessions = services_of(source.app).sessions
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == sessions.cookie_name)
    session = sessions.load(cookie, touch=False)
    assert session is not None and session.csrf_token == csrf
    session.last_seen -= 24 * 3600  # idle for a day: past the idle limit
    sessions.save(session)
    come_back(page)
    cover = page.get_by_role("alertdialog", name="Votre session a pris fin")
    cover.wait_for(timeout=30_000)
    text = cover.inner_text()
    assert "rouvrez le lien du compte rendu d'imagerie" in text, text
    assert "Pro Santé Connect" in text and "E401" in text
    shot(page, "session-idle")
    visited: list[str] = []
    page.on("request", lambda r: visited.append(r.url))
    cover.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/auth/logged-out", timeout=30_000)
    assert "déconnecté" in page.content()
    at_provider = [u for u in visited if "/psc/logout?" in u]
    assert at_provider and "id_token_hint=" in at_provider[0], visited


def test_a_patient_id_mismatch_is_refused_in_french_with_its_code(
    source: SourceStack, page: Any
) -> None:
    """DB.SO.47 (issue 14, item 7): the images' patient id is not the archive's: the
    page says so in French with E425 and the site to contact; the viewer never opens."""
    other = source.other_study
    store = ArchiveStore(source.archive_url)
    archived = store.get(other.kos_sop_uid)
    assert archived is not None
    wrong = dataclasses.replace(archived.record, ins="199999999999999", local_patient_id=None)
    try:
        store.publish(wrong, cda_id=OTHER_CDA_ID, location=LOCATION)
        sign_in(
            page,
            source.stack.viewer_link(other, LOCATION, cda_id=OTHER_CDA_ID),
            "psc",
            "dr.radiologue",
        )
        page.get_by_role("heading", name="Identifiant patient incohérent").wait_for(timeout=30_000)
    finally:
        store.publish(archived.record, cda_id=OTHER_CDA_ID, location=LOCATION)
        store.close()
    text = html.unescape(page.locator("main").inner_text())
    assert PatientIdMismatch.message in text and "E425" in text and SITE in text, text
    assert "/viewer" not in page.url
    shot(page, "patient-id-mismatch")


#: The URL of the last frame OHIF asked for (from the page's resource timings).
LAST_FRAME_URL = """() => {
  const frames = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/frames/'));
  return frames.length ? frames[frames.length - 1].name : null;
}"""
#: A request as OHIF makes it, from the page, to the BFF (not the HTTP cache).
ASK_AS_OHIF = """([url, accept]) => fetch(url, { cache: "no-store", headers: { Accept: accept } })
  .then((r) => r.json().then((body) => [r.status, body]))"""
#: The session's cover lies over OHIF's viewport (what is at the middle of the page).
COVERS_THE_VIEWER = """() => {
  const hit = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
  const cover = document.getElementById('drimbox-session-end');
  return !!cover && !!hit && cover.contains(hit);
}"""
