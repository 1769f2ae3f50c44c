"""The DICOMweb facade's routes in process, with a fake origin (issue 12, item 9): every
route asks the one access decision, then calls only the origin it resolved; outside the
grant, or for a refused origin, nothing of the origin is called; what the facade adds
itself (no KO series, key images as a virtual series, Accept negotiation, parameter
checks) is the same whatever answers for the study."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from bff.access.handover import HandoverStore
from bff.access.limits import InFlight, RateLimit
from bff.access.policy import RemoteOpening
from bff.access.published import PublishedKos
from bff.archive.kos import InsTraits, KosRecord
from bff.archive.store import ArchiveStore
from bff.auth.introspect import PscIntrospector
from bff.auth.middleware import SessionMiddleware
from bff.auth.pending import PendingCookies, PendingLogins
from bff.auth.sessions import COOKIE_NAME, OpenedStudy, SessionStore
from bff.dicomweb import key_images
from bff.dicomweb.cache import CachedFrame, FrameCache
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.series_metadata import PreparedMetadata
from bff.errors import AuthenticationRequired, ViewerError
from bff.export.routes import export_routes
from bff.facade.progress import progress_routes
from bff.facade.routes import dicomweb_routes, frames_route
from bff.origins.base import ExportPlan, Row, SeriesProgress, StudyOrigin
from bff.origins.errors import SourceError
from bff.origins.factory import OriginFactory
from bff.services import Services
from bff.settings import Settings
from bff.transcode import EncodeParams
from bff.web import errors as web_errors
from bff.web.static import OhifSite
from tests.clock import ManualClock

STUDY = "1.2.3"
OTHER = "1.2.9"
SERIES = "1.2.3.1"
KO_SERIES = "1.2.3.99"
SOP = "1.2.3.1.1"
KEY_SOP = "1.2.3.1.2"
JPEGLS = "1.2.840.10008.1.2.4.80"
LOCATION = "testserver"


def _row(**tags: str) -> Row:
    return {tag: {"vr": "UI", "Value": [value]} for tag, value in tags.items()}


class FakeOrigin(StudyOrigin):
    """Answers from memory and records every call."""

    def __init__(self, retriever: Retriever, refusal: ViewerError | None = None) -> None:
        super().__init__(STUDY, retriever, max_part_bytes=1 << 20)
        self.refusal = refusal
        self.calls: list[str] = []
        self.index = key_images.KeyImages(
            (key_images.KeyImageSeries(KO_SERIES, (key_images.KeyImage(SERIES, KEY_SOP),)),),
            series_number=0,
            modalities={SERIES: "CT"},
            sop_uids=frozenset({KEY_SOP}),
        )

    def upstream_for(self, series_uid: str) -> Any:
        raise AssertionError("the fake answers everything itself")

    async def study_rows(self, query: Mapping[str, str]) -> list[Row]:
        self.calls.append("study_rows")
        row = _row(**{"0020000D": STUDY})
        row["00080061"] = {"vr": "CS", "Value": ["CT", "KO"]}
        return [row]

    async def series_rows(self, query: Mapping[str, str]) -> list[Row]:
        self.calls.append("series_rows")
        ct = _row(**{"0020000D": STUDY, "0020000E": SERIES})
        ct["00080060"] = {"vr": "CS", "Value": ["CT"]}
        ct["00081190"] = {"vr": "UR", "Value": ["http://127.0.0.1:8042/dicom-web/studies"]}
        ko = _row(**{"0020000D": STUDY, "0020000E": KO_SERIES})
        ko["00080060"] = {"vr": "CS", "Value": ["KO"]}
        return [ct, ko]

    async def instance_rows(self, series_uid: str | None, query: Mapping[str, str]) -> list[Row]:
        self.calls.append(f"instance_rows {series_uid}")
        return [_row(**{"00080018": SOP})]

    async def key_images(self, series_uid: str | None = None) -> key_images.KeyImages:
        self.calls.append("key_images")
        return self.index

    def raw_series_metadata(self, series_uid: str) -> asyncio.Future[bytes]:
        raise AssertionError("series_metadata is answered whole")

    async def series_metadata(self, root: str, series_uid: str) -> PreparedMetadata:
        self.calls.append(f"series_metadata {series_uid}")
        body = b'[{"00080018":{"vr":"UI","Value":["' + SOP.encode() + b'"]}}]'
        return PreparedMetadata((root, "", "", ""), body, gzip.compress(body), 1, "")

    async def instance_metadata_rows(self, series_uid: str, sop_uids: Sequence[str]) -> list[Row]:
        self.calls.append(f"instance_metadata_rows {series_uid} {','.join(sop_uids)}")
        return [_row(**{"0020000E": series_uid, "00080018": uid}) for uid in sop_uids]

    async def study_metadata_rows(self) -> list[Row]:
        self.calls.append("study_metadata_rows")
        return [_row(**{"0020000E": SERIES, "00080018": SOP})]

    async def rewrite(self, root: str, rows: list[Row]) -> list[Row]:
        self.calls.append("rewrite")
        return rows

    async def bulk(
        self, series_uid: str, sop_uid: str, tag_path: str, accept: str
    ) -> tuple[str, bytes]:
        self.calls.append(f"bulk {series_uid} {tag_path}")
        return "application/octet-stream", b"bulk"

    async def thumbnail(self, series_uid: str, sop_uid: str | None) -> tuple[str, bytes]:
        self.calls.append(f"thumbnail {series_uid} {sop_uid}")
        return "image/jpeg", b"jpeg"

    async def frames(
        self, series_uid: str, sop_uid: str, numbers: Sequence[int]
    ) -> list[CachedFrame]:
        self.calls.append(f"frames {series_uid} {sop_uid} {list(numbers)}")
        return [CachedFrame(b"frame%d" % n, JPEGLS) for n in numbers]

    async def frame_count(self, series_uid: str, sop_uid: str) -> int:
        self.calls.append(f"frame_count {series_uid}")
        return 2

    def prepared_frame(self, series_uid: str, sop_uid: str, number: int) -> None:
        return None  # nothing prepared at publication here (issue 16)

    def start_series(self, series_uid: str) -> None:
        self.calls.append(f"start_series {series_uid}")

    def prefer(self, series_uid: str) -> None:
        self.calls.append(f"prefer {series_uid}")

    def start_at_grant(self, root: str, series_uid: str | None = None) -> None:
        self.calls.append("start_at_grant")

    async def export_plan(self) -> ExportPlan:
        self.calls.append("export_plan")
        return ExportPlan(_row(**{"0020000D": STUDY}), ())

    def progress(self) -> list[SeriesProgress]:
        self.calls.append("progress")
        return [SeriesProgress(SERIES, None, 3, self.refusal)]


class FakeFactory(OriginFactory):
    """Every grant resolves to the one fake origin (local or remote alike)."""

    def __init__(self, origin: FakeOrigin, retriever: Retriever) -> None:
        super().__init__(
            locations={LOCATION: None},  # type: ignore[dict-item]
            retriever=retriever,
            background=set(),
            max_part_bytes=1 << 20,
            frame_timeout=1.0,
        )
        self.origin = origin
        self.resolved: list[str] = []

    def local(self, location: str, study_uid: str, **_: Any) -> Any:
        self.resolved.append(f"local {study_uid}")
        return self.origin

    def remote(
        self, location: str, record: KosRecord, access_token: str, kos_bytes: bytes = b"", **_: Any
    ) -> Any:
        self.resolved.append(f"remote {record.study_uid}")
        return self.origin


def _record() -> KosRecord:
    traits = InsTraits("NOM", ("PRENOM",), "F", "19800101", "75056")
    return KosRecord(
        sop_uid="1.2.3.500",
        study_uid=STUDY,
        accession_number="A1",
        accession_issuer="",
        accession_issuer_type="",
        traits=traits,
        ins=None,
        ins_oid=None,
        local_patient_id="IPP1",
        institution_name="Centre",
        institution_raw="Centre",
        series=(),
        is_key_image_note=False,
        description="",
    )


def idle_retriever() -> Retriever:
    """A Retriever without a transcoding pool: for tests in which nothing is transcoded."""
    return Retriever(
        FrameCache(1 << 20),
        None,  # type: ignore[arg-type]
        EncodeParams(),
        frame_timeout=1.0,
        max_part_bytes=1 << 20,
        workers=1,
    )


class Facade:
    def __init__(
        self,
        tmp_path: Path,
        *,
        refusal: ViewerError | None = None,
        frame_waits: int = 8,
        clock: ManualClock | None = None,
    ) -> None:
        self.kos_state = "published"
        settings = Settings.from_env({}, mode="demo", open_access=False)
        retriever = idle_retriever()
        self.origin = FakeOrigin(retriever, refusal)
        self.factory = FakeFactory(self.origin, retriever)
        archive = ArchiveStore(f"sqlite:///{tmp_path / 'archive.db'}")
        self.clock = clock or ManualClock()
        self.sessions = SessionStore("s" * 32, idle_timeout=600, max_age=3600, clock=self.clock)
        self.services = Services(
            settings=settings,
            sessions=self.sessions,
            pending=PendingCookies("s" * 32),
            logins=PendingLogins(max_entries=10),
            archive=archive,
            retriever=retriever,
            origins=self.factory,
            providers={},
            public_jwks={},
            psc_introspector=PscIntrospector("https://psc", "id", "secret", timeout=1.0),
            handovers=HandoverStore(),
            published=PublishedKos(self._state),
            frame_waits=InFlight(frame_waits),
            link_attempts=RateLimit(100, 600),
            failed_checks=RateLimit(100, 600),
            site=OhifSite(settings),
            background=set(),
        )
        app = Starlette(
            routes=[frames_route(), *dicomweb_routes(), *progress_routes(), *export_routes()],
            middleware=[],
            exception_handlers={ViewerError: web_errors.viewer_error},
        )
        app.state.services = self.services
        wrapped = SessionMiddleware(app, store_of=lambda scope: self.sessions)
        self.client = TestClient(wrapped, base_url=f"http://{LOCATION}")

    async def _state(self, kos_sop_uid: str) -> str | None:
        return self.kos_state

    def grant(self, *, remote: bool = False) -> None:
        session = self.sessions.create()
        session.subject = "someone"
        opening = RemoteOpening(_record()) if remote else None
        session.open_study(OpenedStudy(LOCATION, STUDY, "1.2.3.500", {}, opening))
        self.sessions.save(session)  # what /auth/callback stores (issue 15)
        self.client.cookies.set(COOKIE_NAME, self.sessions.cookie_value(session))
        self.client.headers["X-CSRF-Token"] = session.csrf_token


@pytest.fixture
def facade(tmp_path: Path) -> Iterator[Facade]:
    made = Facade(tmp_path)
    with made.client:
        yield made


ROUTES = [
    f"/dicomweb/studies?StudyInstanceUID={STUDY}",
    f"/dicomweb/studies/{STUDY}/series",
    f"/dicomweb/studies/{STUDY}/instances",
    f"/dicomweb/studies/{STUDY}/metadata",
    f"/dicomweb/studies/{STUDY}/key-images",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/metadata",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/thumbnail",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/metadata",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/thumbnail",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/frames/1",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/bulk/7fe00010",
    f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/bulk/00100010",
]


@pytest.mark.parametrize("remote", [False, True])
def test_every_route_answers_from_the_resolved_origin(facade: Facade, remote: bool) -> None:
    facade.grant(remote=remote)
    for path in ROUTES:
        answer = facade.client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    kind = "remote" if remote else "local"
    assert set(facade.factory.resolved) == {f"{kind} {STUDY}"}
    assert len(facade.factory.resolved) == len(ROUTES)


#: The viewer's API routes behind the same decision (progress, series first, download).
API_ROUTES = [
    ("GET", "/api/progress"),
    ("POST", f"/api/priority/{STUDY}/{SERIES}"),
    ("GET", f"/api/download/{STUDY}"),
]


def assert_session_ended(answer: Any, path: str) -> None:
    """401 E401 in the one JSON shape, fixed French words only: nothing of the exam."""
    assert answer.status_code == 401, (path, answer.status_code, answer.text)
    assert answer.headers["x-error-code"] == "E401", path
    assert answer.json() == {"code": "E401", "message": AuthenticationRequired.message}, path
    assert answer.headers["cache-control"] == "no-store", path


def test_without_a_session_every_route_says_so_and_nothing_is_resolved(facade: Facade) -> None:
    """Issue 14: no (or no longer a) session is 401 E401 on every DICOMweb and API route,
    before the access decision: the viewer tells the user, OHIF's requests get a fast
    answer, and nothing of any study is resolved or fetched."""
    for path in ROUTES:
        assert_session_ended(facade.client.get(path), path)
        assert_session_ended(facade.client.get(path.replace(STUDY, OTHER, 1)), path)
    for method, path in API_ROUTES:
        assert_session_ended(facade.client.request(method, path), path)
    assert facade.factory.resolved == [] and facade.origin.calls == []


def test_a_session_that_expires_while_viewing_gets_401_not_404(facade: Facade) -> None:
    """Issue 14: after the idle limit the same requests that were answered are 401 E401
    (it was a 404, read by the viewer as "nothing there"), with no patient data."""
    facade.grant()
    assert facade.client.get(ROUTES[1]).status_code == 200
    calls = len(facade.origin.calls)
    facade.clock.advance(601)  # past the idle timeout
    for path in ROUTES:
        assert_session_ended(facade.client.get(path), path)
    for method, path in API_ROUTES:
        assert_session_ended(facade.client.request(method, path), path)
    assert len(facade.origin.calls) == calls


def test_outside_the_grant_nothing_is_resolved_or_called(facade: Facade) -> None:
    facade.grant()
    for path in ROUTES[1:]:
        answer = facade.client.get(path.replace(STUDY, OTHER, 1))
        assert answer.status_code == 404 and answer.json()["code"] == "E404", path
    assert facade.factory.resolved == [] and facade.origin.calls == []
    assert facade.client.post(f"/api/priority/{OTHER}/{SERIES}").status_code == 404
    assert facade.client.get(f"/api/download/{OTHER}").status_code == 404
    assert facade.origin.calls == []


def test_a_refused_origin_refuses_every_route_and_is_never_called(tmp_path: Path) -> None:
    refused = Facade(tmp_path, refusal=SourceError("E203", "not whitelisted"))
    with refused.client:
        refused.grant(remote=True)
        for path in [*ROUTES, f"/api/download/{STUDY}"]:
            answer = refused.client.get(path)
            assert answer.status_code == 502, path
            assert answer.json()["code"] == "E203", path
        assert refused.origin.calls == []
        # The progress shows why, in the viewer (DB.VI-CO.27).
        series = refused.client.get("/api/progress").json()["series"]
        assert [s["error"]["code"] for s in series] == ["E203"]


def test_series_search_hides_the_manifest_and_adds_the_key_images(facade: Facade) -> None:
    facade.grant()
    rows = facade.client.get(f"/dicomweb/studies/{STUDY}/series").json()
    assert [r["0020000E"]["Value"][0] for r in rows] == [SERIES, KO_SERIES]
    assert rows[1]["0008103E"]["Value"] == [key_images.KEY_IMAGES_DESCRIPTION]
    study = facade.client.get(f"/dicomweb/studies?StudyInstanceUID={STUDY}").json()
    assert study[0]["00080061"]["Value"] == ["CT"]  # KO left out of ModalitiesInStudy


def test_a_virtual_series_is_read_in_its_real_series(facade: Facade) -> None:
    facade.grant()
    base = f"/dicomweb/studies/{STUDY}/series/{KO_SERIES}"
    rows = facade.client.get(f"{base}/metadata").json()
    assert rows[0]["0020000E"]["Value"] == [KO_SERIES]  # moved into the virtual series
    frames = facade.client.get(f"{base}/instances/{KEY_SOP}/frames/1")
    assert frames.status_code == 200
    assert f"frames {SERIES} {KEY_SOP} [1]" in facade.origin.calls  # the real series
    assert facade.client.get(f"{base}/instances/{SOP}/frames/1").status_code == 404
    assert facade.client.post(f"/api/priority/{STUDY}/{KO_SERIES}").status_code == 202
    assert f"prefer {SERIES}" in facade.origin.calls


def test_frames_negotiate_the_served_syntax_and_check_parameters(facade: Facade) -> None:
    facade.grant()
    base = f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}"
    ok = facade.client.get(
        f"{base}/frames/1,2",
        headers={
            "Accept": f'multipart/related; type="application/octet-stream"; '
            f"transfer-syntax={JPEGLS}"
        },
    )
    assert ok.status_code == 200 and f"transfer-syntax={JPEGLS}" in ok.headers["content-type"]
    assert b"frame1" in ok.content and b"frame2" in ok.content
    refused = facade.client.get(
        f"{base}/frames/1",
        headers={
            "Accept": 'multipart/related; type="application/octet-stream"; '
            "transfer-syntax=1.2.840.10008.1.2.1"
        },
    )
    assert refused.status_code == 406
    whole = facade.client.get(f"{base}/bulk/7fe00010")
    assert whole.status_code == 200 and b"frame2" in whole.content  # every frame
    for bad in ("frames/0", "frames/1;2", "bulk/zzzz", "frames/" + ",".join(["1"] * 300)):
        assert facade.client.get(f"{base}/{bad}").status_code in (400, 404), bad
    assert facade.client.get(f"/dicomweb/studies/{STUDY}/series/x.y/metadata").status_code == 400


def test_no_answer_carrying_patient_data_is_stored_and_no_pacs_url_leaks(
    facade: Facade,
) -> None:
    """Issue 13, item 8: every answer carrying patient data is ``no-store``, frames,
    thumbnails and bulk data included (the next user of a shared computer finds none of
    it in the browser's cache); every GET route of the facade is asked here, so a new one
    cannot escape. QIDO rows lose the upstream's Retrieve URL (OHIF builds its own)."""
    facade.grant()
    paths = [*ROUTES, "/api/progress", f"/api/download/{STUDY}"]
    for route in [frames_route(), *dicomweb_routes(), *progress_routes(), *export_routes()]:
        assert isinstance(route, Route)
        if "GET" in (route.methods or ()):
            assert any(route.path_regex.match(p.partition("?")[0]) for p in paths), route.path
    for path in paths:
        answer = facade.client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["cache-control"] == "no-store", path
        assert b"8042" not in answer.content and b"RetrieveURL" not in answer.content
    chosen = facade.client.post(f"/api/priority/{STUDY}/{SERIES}")
    assert chosen.status_code == 202 and chosen.headers["cache-control"] == "no-store"
    rows = facade.client.get(f"/dicomweb/studies/{STUDY}/series").json()
    assert all("00081190" not in row for row in rows)


def test_an_unpublished_kos_ends_access_on_every_route(facade: Facade) -> None:
    facade.grant()
    assert facade.client.get(ROUTES[1]).status_code == 200
    facade.kos_state = "unpublished"
    facade.services.published.forget("1.2.3.500")
    calls = len(facade.origin.calls)
    for path in ROUTES[1:]:
        assert facade.client.get(path).status_code == 404, path
    assert facade.client.get(f"/api/download/{STUDY}").status_code == 404
    assert len(facade.origin.calls) == calls  # nothing asked of the origin


def test_frame_requests_waiting_are_bounded_per_session(tmp_path: Path) -> None:
    bounded = Facade(tmp_path, frame_waits=0)  # no room at all: every frame request 429
    with bounded.client:
        bounded.grant()
        base = f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}"
        answer = bounded.client.get(f"{base}/frames/1")
        assert answer.status_code == 429 and answer.json()["code"] == "E429"
        assert not any(call.startswith("frames") for call in bounded.origin.calls)
