"""Issue 13, item 3 (unbounded input), in process against the real application
(``create_app``, its lifespan run once for the module): every request body is bounded
by its route's cap before it is read whole, uploads are read with a cap, a deflated KOS
is refused before anything is inflated, and KOS and upload forms are parsed off the
event loop. Facts are counted (bytes the application pulled, memory allocated,
threads), never timed."""

from __future__ import annotations

import io
import threading
import tracemalloc
import warnings
import zlib
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import UID
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route

from bff.app import create_app
from bff.archive.kos import DeflatedKos, KosRecord, read_kos
from bff.auth.sessions import Session, SessionStore
from bff.dicomweb.retrieve import peek_header
from bff.errors import ViewerError
from bff.facade.routes import FRAMES_PATH
from bff.services import services_of
from bff.web import uploads
from bff.web.errors import viewer_error
from bff.web.limits import BodyCaps, BodyLimits
from tests.conftest import make_settings
from tests.unit.test_archive import CDA_ID, make_kos, to_bytes

with warnings.catch_warnings():
    # starlette 1.x asks for the `httpx2` package for its TestClient (see test_static.py).
    warnings.filterwarnings("ignore", message=".*install `httpx2`.*")
    from starlette.testclient import TestClient

FORM_CAP = 64 * 1024
KOS_CAP = 16 * 1024**2
#: uvicorn hands the body over in chunks of at most 64 KiB; so do these tests.
CHUNK = 64 * 1024
ADMIN_SECRET = "an-admin-secret-of-32-characters"
HANDOVER_SECRET = "a-handover-secret"
DEFLATED = UID("1.2.840.10008.1.2.1.99")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pulled: int  # body bytes the application took from the server


class Bff:
    """The application, started, and a way to send it a request whose body is produced
    chunk by chunk as the application asks for it."""

    def __init__(self, client: TestClient, app: Starlette) -> None:
        self.client = client
        self.app = app
        self.loop_threads: list[int] = []

    @property
    def sessions(self) -> SessionStore:
        return services_of(self.app).sessions

    def session(self, *, psc: bool = False) -> Session:
        session = self.sessions.create()
        if psc:
            session.subject, session.provider, session.profile = "dr", "psc", "professional"
            session.tokens = {"access_token": "psc-token"}
            self.sessions.save(session)  # for every reader of the store (issue 15)
        return session

    def post(
        self,
        path: str,
        chunks: Iterable[bytes],
        *,
        headers: dict[str, str] | None = None,
        session: Session | None = None,
        query: str = "",
    ) -> Answer:
        all_headers = dict(headers or {})
        if session is not None:
            all_headers["cookie"] = (
                f"{self.sessions.cookie_name}={self.sessions.cookie_value(session)}"
            )
        portal = self.client.portal
        assert portal is not None, "the TestClient is not started"
        return portal.call(self._post, path, iter(chunks), all_headers, query)

    async def _post(
        self, path: str, chunks: Iterator[bytes], headers: dict[str, str], query: str
    ) -> Answer:
        self.loop_threads.append(threading.get_ident())
        pulled = 0
        done = False

        async def receive() -> dict[str, Any]:
            nonlocal pulled, done
            if done:
                return {"type": "http.disconnect"}
            chunk = next(chunks, None)
            if chunk is None:
                done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}

        sent: list[dict[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"co.localhost")]
            + [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("co.localhost", 80),
        }
        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return Answer(start["status"], answer_headers, body, pulled)


@pytest.fixture(scope="module")
def bff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bff]:
    work = tmp_path_factory.mktemp("bounds")
    settings = make_settings(
        "http://127.0.0.1:9/dicom-web",
        open_access=False,
        transcode_workers=1,
        frame_disk_cache_dir="",
        archive_url=f"sqlite:///{work / 'archive.db'}",
        audit_log=work / "audit.jsonl",
        admin_secret=ADMIN_SECRET,
        consumer_enabled=True,
        consumer_handover_secret=HANDOVER_SECRET,
    )
    assert (settings.max_form_bytes, settings.max_kos_bytes) == (FORM_CAP, KOS_CAP)
    app = create_app(settings)
    with TestClient(app) as client:
        yield Bff(client, app)


def zeros(total: int) -> Iterator[bytes]:
    """``total`` bytes in chunks of :data:`CHUNK`, made only when asked for."""
    for start in range(0, total, CHUNK):
        yield b"0" * min(CHUNK, total - start)


URLENCODED = {"content-type": "application/x-www-form-urlencoded"}
#: The routes that take a KOS as the body: the hand-over, the admin API's publication.
KOS_ROUTES = [
    (
        "/api/consumer/kos",
        {"authorization": f"Bearer {HANDOVER_SECRET}", "x-psc-access-token": "t"},
        "",
    ),
    ("/api/admin/kos", {"authorization": f"Bearer {ADMIN_SECRET}"}, f"cda_id={CDA_ID}"),
]


# -- one request-size policy for every request --------------------------------------------


def test_a_20_mb_logout_form_is_refused_before_one_byte_is_read(bff: Bff) -> None:
    """The issue's case: 20 MB urlencoded to /auth/logout was buffered and parsed before
    the CSRF check (400). Declared: 413 E440 at once, nothing pulled."""
    session = bff.session()
    answer = bff.post(
        "/auth/logout",
        zeros(20 * 10**6),
        headers={**URLENCODED, "content-length": str(20 * 10**6)},
        session=session,
    )
    assert answer.status == 413 and answer.headers["x-error-code"] == "E440"
    assert answer.pulled == 0
    assert answer.headers["connection"] == "close"
    assert "trop volumineuse" in answer.body.decode()
    # not logged out:
    assert _id(bff.sessions.load(bff.sessions.cookie_value(session))) == session.id


def test_a_20_mb_chunked_logout_form_is_cut_at_the_cap(bff: Bff) -> None:
    """No Content-Length (chunked): reading stops at the cap at the latest (here the
    form's own field limit, 1 KiB, refuses it first: 400)."""
    session = bff.session()
    answer = bff.post("/auth/logout", zeros(20 * 10**6), headers=URLENCODED, session=session)
    assert answer.status in (400, 413)
    assert answer.pulled <= FORM_CAP + CHUNK
    assert _id(bff.sessions.load(bff.sessions.cookie_value(session))) == session.id


def test_a_chunked_body_is_cut_at_the_cap_whoever_reads_it() -> None:
    """The middleware alone, in front of a route that reads everything it is given."""
    read: list[int] = []

    async def greedy(request: Request) -> Response:
        read.append(len(await request.body()))
        return PlainTextResponse("read")

    app = Starlette(
        routes=[
            Route("/upload", greedy, methods=["POST"]),
            Route("/form", greedy, methods=["POST"]),
        ],
        middleware=[Middleware(BodyLimits, caps=BodyCaps(FORM_CAP, {"/upload": 4 * FORM_CAP}))],
        exception_handlers={ViewerError: viewer_error},
    )
    with TestClient(app) as client:
        small = Bff(client, app).post("/form", zeros(20 * 10**6))
        large = Bff(client, app).post("/upload", zeros(20 * 10**6))
        within = Bff(client, app).post("/upload", zeros(4 * FORM_CAP))
    assert (small.status, large.status, within.status) == (413, 413, 200)
    assert small.headers["x-error-code"] == "E440" and small.headers["connection"] == "close"
    assert FORM_CAP < small.pulled <= FORM_CAP + CHUNK
    assert 4 * FORM_CAP < large.pulled <= 4 * FORM_CAP + CHUNK
    assert read == [4 * FORM_CAP]


@pytest.mark.parametrize("path", ["/auth/login", "/api/priority/1.2.3/1.2.3.4", "/api/session"])
def test_every_route_has_the_small_cap(bff: Bff, path: str) -> None:
    answer = bff.post(path, zeros(FORM_CAP + 1), headers=URLENCODED, session=bff.session())
    assert answer.status == 413 or answer.pulled <= FORM_CAP + CHUNK, answer
    declared = bff.post(path, zeros(FORM_CAP + 1), headers={"content-length": str(FORM_CAP + 1)})
    assert declared.status == 413 and declared.pulled == 0


def test_small_forms_keep_starlettes_limits(bff: Bff) -> None:
    """Login and logout parse their form with a field count limit: a form of many tiny
    fields (well under the byte cap) is refused, and the session survives."""
    session = bff.session()
    body = "&".join([f"csrf={session.csrf_token}", *(f"f{i}=x" for i in range(20))]).encode()
    answer = bff.post("/auth/logout", [body], headers=URLENCODED, session=session)
    assert answer.status == 400
    assert _id(bff.sessions.load(bff.sessions.cookie_value(session))) == session.id
    ok = bff.post(
        "/auth/logout", [f"csrf={session.csrf_token}".encode()], headers=URLENCODED, session=session
    )
    assert ok.status == 200 and bff.sessions.load(bff.sessions.cookie_value(session)) is None


# -- uploads streamed with a cap --------------------------------------------------------


def form_data(
    boundary: str, fields: dict[str, str], kos: bytes | Iterable[bytes]
) -> Iterator[bytes]:
    for name, value in fields.items():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    yield (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="kos"; filename="kos.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()
    yield from [kos] if isinstance(kos, bytes) else kos
    yield f"\r\n--{boundary}--\r\n".encode()


def multipart(boundary: str) -> dict[str, str]:
    return {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_a_64_mib_kos_upload_is_refused_at_the_cap(bff: Bff) -> None:
    """The issue's case: a 64 MiB file posted to /consumer/open was read whole before the
    16 MiB check. Chunked: cut at the cap; declared: refused at once."""
    session = bff.session(psc=True)
    fields = {"csrf": session.csrf_token}
    answer = bff.post(
        "/consumer/open",
        form_data("b0undary", fields, zeros(64 * 1024**2)),
        headers=multipart("b0undary"),
        session=session,
    )
    assert answer.status == 413 and answer.headers["x-error-code"] == "E440"
    assert answer.pulled <= KOS_CAP + FORM_CAP + CHUNK
    declared = bff.post(
        "/consumer/open",
        form_data("b0undary", fields, zeros(64 * 1024**2)),
        headers={**multipart("b0undary"), "content-length": str(64 * 1024**2 + 500)},
        session=session,
    )
    assert declared.status == 413 and declared.pulled == 0
    assert session.studies == []


def test_the_kos_file_itself_is_capped_at_max_kos_bytes(bff: Bff) -> None:
    """The body may carry the form around the file; the file alone is still 16 MiB."""
    session = bff.session(psc=True)
    answer = bff.post(
        "/consumer/open",
        form_data("b0undary", {"csrf": session.csrf_token}, zeros(KOS_CAP + 1)),
        headers=multipart("b0undary"),
        session=session,
    )
    assert answer.status == 413 and answer.headers["x-error-code"] == "E440"


def test_an_upload_is_read_with_its_own_cap_even_without_the_middleware() -> None:
    """The routes read a KOS with :func:`read_body`, never ``request.body()`` then a
    size check: it stops at its limit by itself."""

    async def upload(request: Request) -> Response:
        return PlainTextResponse(str(len(await uploads.read_body(request, 4 * FORM_CAP))))

    app = Starlette(
        routes=[Route("/upload", upload, methods=["POST"])],
        exception_handlers={ViewerError: viewer_error},
    )
    with TestClient(app) as client:
        chunked = Bff(client, app).post("/upload", zeros(64 * 1024**2))
        declared = Bff(client, app).post(
            "/upload", zeros(64 * 1024**2), headers={"content-length": str(64 * 1024**2)}
        )
        within = Bff(client, app).post("/upload", zeros(4 * FORM_CAP))
    assert (chunked.status, declared.status, within.status) == (413, 413, 200)
    assert chunked.pulled <= 4 * FORM_CAP + CHUNK and declared.pulled == 0
    assert within.body == str(4 * FORM_CAP).encode()


@pytest.mark.parametrize(("path", "headers", "query"), KOS_ROUTES)
def test_kos_bodies_are_capped(bff: Bff, path: str, headers: dict[str, str], query: str) -> None:
    headers = {**headers, "content-type": "application/dicom"}
    answer = bff.post(path, zeros(64 * 1024**2), headers=headers, query=query)
    assert answer.status == 413 and answer.headers["x-error-code"] == "E440"
    assert answer.pulled <= KOS_CAP + CHUNK


def test_a_kos_opened_by_hand_is_read_and_granted(bff: Bff) -> None:
    """Within bounds, the form works: a browser's multipart form, the KOS granted."""
    session = bff.session(psc=True)
    kos = to_bytes(make_kos())
    answer = bff.post(
        "/consumer/open",
        form_data("----WebKitFormBoundaryx7", {"csrf": session.csrf_token, "series": ""}, kos),
        headers=multipart("----WebKitFormBoundaryx7"),
        session=session,
    )
    assert answer.status == 303, answer.body
    assert [s.study_uid for s in session.studies] == [read_kos(kos).study_uid]


def test_the_opening_pages_urlencoded_form_is_read_too(
    bff: Bff, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo button posts the opening form urlencoded (no file): read within the
    small cap (no demo KOS outside demo mode: no KOS file, 400); larger, 413."""
    session = bff.session(psc=True)
    form = f"csrf={session.csrf_token}&demo=1".encode()
    caplog.set_level("INFO", logger="bff.web.errors")
    answer = bff.post("/consumer/open", [form], headers=URLENCODED, session=session)
    assert answer.status == 400 and answer.headers["x-error-code"] == "E400"
    assert caplog.records[-1].getMessage().endswith("no KOS file")  # past the CSRF check
    wrong = bff.post("/consumer/open", [b"csrf=nope&demo=1"], headers=URLENCODED, session=session)
    assert wrong.status == 400
    large = bff.post("/consumer/open", zeros(FORM_CAP + 1), headers=URLENCODED, session=session)
    assert large.status == 413 and large.pulled <= FORM_CAP + CHUNK


def test_a_malformed_upload_form_is_a_plain_400(bff: Bff) -> None:
    session = bff.session(psc=True)
    for body, headers in (
        (b"--b\r\nno-colon\r\n\r\nx\r\n--b--\r\n", multipart("b")),
        (b"not multipart at all", multipart("b")),
        (b"x", {"content-type": "text/plain"}),
    ):
        answer = bff.post("/consumer/open", [body], headers=headers, session=session)
        assert answer.status == 400 and answer.headers["x-error-code"] == "E400", body


# -- a deflated KOS is refused before anything is inflated ---------------------------------


def deflated(*, padding: int = 0) -> bytes:
    """A Part-10 KOS in Deflated Explicit VR Little Endian (written by pydicom) whose data
    set inflates to its own size plus ``padding`` bytes of Data Set Trailing Padding
    (FFFC,FFFC), deflated a megabyte at a time."""
    kos = make_kos()
    kos.file_meta.TransferSyntaxUID = DEFLATED
    written = to_bytes(kos)
    start = 144 + int.from_bytes(written[140:144], "little")  # after the file meta group
    if not padding:
        return written
    data_set = zlib.decompress(written[start:], -zlib.MAX_WBITS)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [written[:start], deflate.compress(data_set)]
    out.append(deflate.compress(b"\xfc\xff\xfc\xffOB\x00\x00" + padding.to_bytes(4, "little")))
    block = bytes(1024**2)
    for offset in range(0, padding, len(block)):
        out.append(deflate.compress(block[: min(len(block), padding - offset)]))
    out.append(deflate.flush())
    return b"".join(out)


def test_the_test_deflated_kos_is_what_pydicom_reads() -> None:
    """The helper above makes a genuine deflated KOS (pydicom inflates and reads it)."""
    ds = pydicom.dcmread(io.BytesIO(deflated(padding=1000)))
    assert str(ds.file_meta.TransferSyntaxUID) == DEFLATED
    assert str(ds.SOPInstanceUID) == make_kos().SOPInstanceUID
    assert len(ds.DataSetTrailingPadding) == 1000


def test_a_deflated_kos_bomb_is_refused_without_inflating() -> None:
    """The issue's case: 0.5 MiB inflating to 512 MiB grew the demo's RSS by 513 MiB.
    Here 64 MiB of padding: refused from the file meta, and less than 4 MiB allocated."""
    bomb = deflated(padding=64 * 1024**2)
    assert len(bomb) < 1024**2
    tracemalloc.start()
    try:
        with pytest.raises(DeflatedKos, match="deflated"):
            read_kos(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2


def test_a_deflated_kos_file_is_refused_by_the_cli_reader(tmp_path: Path) -> None:
    path = tmp_path / "kos.dcm"
    path.write_bytes(deflated())
    with pytest.raises(DeflatedKos):
        read_kos(path)


def test_a_deflated_instance_from_a_source_is_not_inflated() -> None:
    """The Consumer's intake of a remote Source's instances: the header of a deflated one
    is its file meta only; the Consumer's policy then refuses it (E302)."""
    bomb = deflated(padding=64 * 1024**2)
    tracemalloc.start()
    try:
        header = peek_header(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2
    assert str(header.file_meta.TransferSyntaxUID) == DEFLATED
    assert str(header.SOPInstanceUID) == make_kos().SOPInstanceUID


@pytest.mark.parametrize(("path", "headers", "query"), KOS_ROUTES)
def test_every_kos_intake_refuses_a_deflated_kos(
    bff: Bff, path: str, headers: dict[str, str], query: str
) -> None:
    headers = {**headers, "content-type": "application/dicom"}
    answer = bff.post(path, [deflated(padding=1024**2)], headers=headers, query=query)
    assert answer.status == 415 and answer.headers["x-error-code"] == "E441"
    assert "Deflated" in answer.body.decode()


def test_the_opening_form_refuses_a_deflated_kos(bff: Bff) -> None:
    session = bff.session(psc=True)
    answer = bff.post(
        "/consumer/open",
        form_data("b0undary", {"csrf": session.csrf_token}, deflated()),
        headers=multipart("b0undary"),
        session=session,
    )
    assert answer.status == 415 and answer.headers["x-error-code"] == "E441"
    assert session.studies == []


# -- KOS and upload forms parsed off the event loop -----------------------------------------


def test_kos_and_forms_are_parsed_off_the_event_loop(
    bff: Bff, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_in: list[tuple[str, int]] = []

    def recording_read_kos(data: bytes) -> KosRecord:
        parsed_in.append(("kos", threading.get_ident()))
        return read_kos(data)

    def recording_form(body: bytes, boundary: str, *, max_file_bytes: int) -> uploads.UploadForm:
        parsed_in.append(("form", threading.get_ident()))
        return parse_form_data(body, boundary, max_file_bytes=max_file_bytes)

    parse_form_data = uploads.parse_form_data
    monkeypatch.setattr(uploads, "read_kos", recording_read_kos)
    monkeypatch.setattr(uploads, "parse_form_data", recording_form)
    kos = to_bytes(make_kos())
    handed = bff.post(
        "/api/consumer/kos",
        [kos],
        headers={
            "authorization": f"Bearer {HANDOVER_SECRET}",
            "x-psc-access-token": "t",
            "content-type": "application/dicom",
        },
    )
    assert handed.status == 201, handed.body
    session = bff.session(psc=True)
    opened = bff.post(
        "/consumer/open",
        form_data("b0undary", {"csrf": session.csrf_token}, kos),
        headers=multipart("b0undary"),
        session=session,
    )
    assert opened.status == 303, opened.body
    loop = set(bff.loop_threads)
    assert [what for what, _ in parsed_in] == ["kos", "form", "kos"]
    assert len(loop) == 1 and not loop & {thread for _, thread in parsed_in}


def _id(session: Any) -> str | None:
    return getattr(session, "id", None)


def test_the_router_tries_the_frames_route_first(bff: Bff) -> None:
    """Issue 16 item 2 (the lean path): every frame is its own request; the router tries
    its routes in order, so the frames route comes first (bff/facade/routes.py
    frames_route) and no route before it could take a frame's path."""
    routes = bff.app.routes
    assert routes[0].path == FRAMES_PATH  # type: ignore[attr-defined]
    frame = "/dicomweb/studies/1.2/series/1.3/instances/1.4/frames/1"
    assert routes[0].matches({"type": "http", "path": frame, "method": "GET"})[0] == Match.FULL
