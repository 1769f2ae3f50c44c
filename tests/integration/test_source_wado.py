"""The Source WADO-RS API over HTTP, as a Consumer DRIMbox calls it (FACTS section 1):
a real ProSantéConnect token from the local provider, introspected; the KOS archive;
the real Orthanc; the statuses of spec Tableau 2 (DB.VI-CO.27: 403 E204, 404 E205,
410 E206, 502 E207, 406 E209) and the streamed multipart answer."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from starlette.applications import Starlette

from bff.app import create_app
from bff.archive.kos import read_kos
from bff.archive.store import ArchiveStore
from bff.demo.dataset import DemoStudy
from bff.demo.pki import TlsFiles, make_test_pki
from bff.demo.stack import (
    CLIENT_ID,
    DEMO_CDA_ID,
    DEMO_USERS_FILE,
    Stack,
    new_stack,
    publish_demo_kos,
)
from bff.dicomweb.multipart import MultipartParser, Part, parse_content_type
from bff.idp.app import create_idp_app
from bff.idp.users import load_users
from bff.services import services_of
from bff.settings import Settings
from bff.source.listener import source_api_options
from bff.state.audit_log import AuditLog
from tests.access import LoopbackTransport, psc_access_token
from tests.conftest import Pacs, make_settings
from tests.consumer_stack import from_test_ca, whitelisted
from tests.servers import free_port, live_server
from tests.source_stack import LOCATION, OTHER_CDA_ID, set_state

pytestmark = pytest.mark.integration

DEAD_LOCATION = "dead.localhost"
JPEG_LS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
WRONG_PATIENT_KOS = "1.2.826.0.1.3680043.8.498.424242"
DR_RADIOLOGUE_RPPS = "810001234567"
#: The DRIM-M accepted list as a Consumer sends it: q values, quoted and unquoted.
DRIM_ACCEPT = ", ".join(
    [
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.70',
        "multipart/related; transfer-syntax=1.2.840.10008.1.2.4.80; type=application/dicom; q=0.9",
        'multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.4.91";'
        " q=0.8",
        *(
            f'multipart/related; type="application/dicom"; transfer-syntax={ts}; q=0.5'
            for ts in (
                "1.2.840.10008.1.2.4.50",
                "1.2.840.10008.1.2.4.51",
                "1.2.840.10008.1.2.4.100",
                "1.2.840.10008.1.2.4.101",
                "1.2.840.10008.1.2.4.102",
                "1.2.840.10008.1.2.4.103",
            )
        ),
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; q=0.1',
    ]
)


class MovableClock:
    """The provider's clock, moved by tests to expire tokens."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def is_pseudonym(actor: object) -> bool:
    """An HMAC-SHA-256 pseudonym (bff/audit.py), not a PSC subject."""
    return isinstance(actor, str) and re.fullmatch(r"[0-9a-f]{32}", actor) is not None


@dataclass(frozen=True)
class WadoStack:
    stack: Stack
    study: DemoStudy
    other_study: DemoStudy  # its KOS is published for a location whose PACS is down
    app: Starlette
    settings: Settings
    archive_url: str
    audit_log: Path
    clock: MovableClock
    pki: dict[str, TlsFiles]

    def url(self, path: str, host: str = LOCATION) -> str:
        """On the mutual-TLS listener, as a Consumer DRIMbox asks."""
        return f"https://{host}:{self.settings.source_api_port}/api/source{path}"

    def series_path(self, study: DemoStudy | None = None, index: int = 1) -> str:
        study = study or self.study
        return f"/studies/{study.study_uid}/series/{study.series_uids[index]}"


@pytest.fixture(scope="module")
def wado(
    pacs: Pacs, other_study: DemoStudy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WadoStack]:
    work = tmp_path_factory.mktemp("source-wado")
    bff_port, idp_port, api_port = free_port(), free_port(), free_port()
    pki = make_test_pki(work / "pki", server_names=("localhost", LOCATION, DEAD_LOCATION))
    stack = new_stack(bff_port, idp_port, (LOCATION, DEAD_LOCATION))
    archive_url = f"sqlite:///{work / 'archive.db'}"
    publish_demo_kos(archive_url, pacs.study.kos_path, location=LOCATION, cda_id=DEMO_CDA_ID)
    publish_demo_kos(archive_url, other_study.kos_path, location=DEAD_LOCATION, cda_id=OTHER_CDA_ID)
    # A KOS whose INS is not the one in the images (Tableau 2 E209).
    store = ArchiveStore(archive_url)
    wrong = dataclasses.replace(
        read_kos(pacs.study.kos_path),
        sop_uid=WRONG_PATIENT_KOS,
        ins="100000000000000",
        local_patient_id=None,
    )
    store.publish(wrong, cda_id=DEMO_CDA_ID, location=LOCATION)
    store.close()
    clock = MovableClock()
    idp = create_idp_app(
        load_users(DEMO_USERS_FILE), stack.idp_clients(), issuer_base=stack.issuer_base, clock=clock
    )
    dead_pacs = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    settings = make_settings(
        pacs.dicomweb_url,
        **stack.bff_overrides(),
        open_access=False,
        locations=f"{LOCATION}={pacs.dicomweb_url},{DEAD_LOCATION}={dead_pacs}",
        archive_url=archive_url,
        audit_log=work / "audit.jsonl",
        source_api_port=api_port,  # the API answers on this listener only
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(pki["client"].ca_cert),
        # The Consumer's client certificate is a whitelisted operator certificate.
        **whitelisted(work, ["consumer.localhost"]),
    )
    app = create_app(settings)
    with (
        live_server(idp, port=idp_port),
        live_server(app, port=bff_port, also=[source_api_options(app, settings)]),
    ):
        yield WadoStack(
            stack,
            pacs.study,
            other_study,
            app,
            settings,
            archive_url,
            work / "audit.jsonl",
            clock,
            pki,
        )


def consumer_tls(pki: dict[str, TlsFiles], client: str = "client") -> ssl.SSLContext:
    """A Consumer DRIMbox's TLS: our test CA for the Source, a client certificate."""
    context = ssl.create_default_context(cafile=str(pki["server"].ca_cert))
    context.load_cert_chain(pki[client].cert, pki[client].key)
    return context


@pytest.fixture(scope="module")
def client(wado: WadoStack) -> Iterator[httpx.Client]:
    transport = LoopbackTransport(verify=consumer_tls(wado.pki))
    with httpx.Client(transport=transport, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def token(wado: WadoStack) -> str:
    return psc_access_token(wado.stack)


def headers(token: str, kos: str, accept: str = DRIM_ACCEPT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "KOS-SOPInstanceUID": kos, "Accept": accept}


def stored_files(study: DemoStudy, series_uid: str) -> dict[str, bytes]:
    """SOP Instance UID -> the bytes uploaded to Orthanc, for one series."""
    files = {}
    for path in study.instance_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SeriesInstanceUID == series_uid:
            files[str(ds.SOPInstanceUID)] = path.read_bytes()
    return files


def read_parts(response: httpx.Response) -> list[Part]:
    """Parse the streamed multipart incrementally, as a Consumer would."""
    media_type, params = parse_content_type(response.headers["content-type"])
    assert media_type == "multipart/related" and params["type"] == "application/dicom"
    parser = MultipartParser(params["boundary"], max_part_bytes=64 * 1024**2)
    parts: list[Part] = []
    chunks = [response.content] if response.is_stream_consumed else response.iter_raw()
    for chunk in chunks:
        parts += parser.feed(chunk)
    parser.finalize()  # the closing delimiter came: the stream is complete
    return parts


def sop_uid(part: Part) -> str:
    return str(pydicom.dcmread(BytesIO(part.body), stop_before_pixels=True).SOPInstanceUID)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == code
    assert "multipart" not in response.headers["content-type"]


# -- the answer ---------------------------------------------------------------------------


def test_series_streams_the_stored_jpegls_instances_byte_for_byte(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    series_uid = wado.study.series_uids[1]
    expected = stored_files(wado.study, series_uid)
    with client.stream(
        "GET", wado.url(wado.series_path()), headers=headers(token, wado.study.kos_sop_uid)
    ) as response:
        assert response.status_code == 200, response.read()
        # Streamed as parts arrive: chunked, no length known in advance.
        assert "content-length" not in response.headers
        assert response.headers.get("transfer-encoding") == "chunked"
        parts = read_parts(response)
    assert len(parts) == len(expected) > 1
    for part in parts:
        assert part.headers["content-type"] == f"application/dicom; transfer-syntax={JPEG_LS}"
        assert part.body == expected[sop_uid(part)]  # the stored bytes, untouched
    assert {sop_uid(p) for p in parts} == set(expected)
    entry = [e for e in read_audit(wado) if e["event"] == "source_retrieve"][-1]
    assert entry["series_uid"] == series_uid and entry["kos_sop_uid"] == wado.study.kos_sop_uid
    # Who asked (issue 13 items 5 and 7, issue 15 item 5): the professional as a
    # pseudonym (HMAC of the PSC subject, which holds his RPPS: never written), the Consumer's
    # client, the peer and its certificate (the listener's ASGI tls extension), which
    # the whitelist lists.
    assert is_pseudonym(entry["actor"])
    assert "f:" not in json.dumps(entry) and DR_RADIOLOGUE_RPPS not in json.dumps(entry)
    assert entry["client_id"] == CLIENT_ID
    assert entry["peer_address"] == "127.0.0.1"
    assert entry["peer_certificate_dn"] == "CN=consumer.localhost,O=DRIMbox viewer tests,C=FR"
    assert entry["whitelist_id"] == "DRIMBOX-TEST-001"
    assert token not in json.dumps(read_audit(wado))


def test_instance_form_answers_one_part(wado: WadoStack, client: httpx.Client, token: str) -> None:
    expected = stored_files(wado.study, wado.study.series_uids[1])
    sop = sorted(expected)[3]
    response = client.get(
        wado.url(f"{wado.series_path()}/instances/{sop}"),
        headers=headers(token, wado.study.kos_sop_uid),
    )
    assert response.status_code == 200, response.text
    assert f"transfer-syntax={JPEG_LS}" in response.headers["content-type"]
    parts = read_parts(response)
    assert len(parts) == 1 and parts[0].body == expected[sop]


def test_no_image_leaves_when_the_audit_table_cannot_take_the_retrieval(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    """Issue 15 item 5, fail closed: a Source API retrieval is written to the audit table
    before anything is asked of the PACS or sent; the table's database unreachable (a
    real PostgreSQL client refused at a closed port), the answer is 503 E508, no DICOM."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    trail = services_of(wado.app).audit_trail
    trail.log = AuditLog(f"postgresql+psycopg://drimbox@127.0.0.1:{port}/drimbox")
    sop = sorted(stored_files(wado.study, wado.study.series_uids[1]))[0]
    try:
        for path in (f"{wado.series_path()}/instances/{sop}", f"{wado.series_path()}/metadata"):
            refused = client.get(wado.url(path), headers=headers(token, wado.study.kos_sop_uid))
            assert_error(refused, 503, "E508")
            assert b"DICM" not in refused.content
    finally:
        trail.log.close()
        trail.log = None
    answer = client.get(
        wado.url(f"{wado.series_path()}/instances/{sop}"),
        headers=headers(token, wado.study.kos_sop_uid),
    )
    assert answer.status_code == 200


def test_explicit_little_endian_when_jpegls_is_not_accepted(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    accept = (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.91, '
        "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1; q=0.5"
    )
    series_uid = wado.study.series_uids[1]
    expected = stored_files(wado.study, series_uid)
    with client.stream(
        "GET", wado.url(wado.series_path()), headers=headers(token, wado.study.kos_sop_uid, accept)
    ) as response:
        assert response.status_code == 200, response.read()
        parts = read_parts(response)
    assert len(parts) == len(expected)
    for part in parts:
        assert part.headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
        ds = pydicom.dcmread(BytesIO(part.body))
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        original = pydicom.dcmread(BytesIO(expected[str(ds.SOPInstanceUID)]))
        assert original.file_meta.TransferSyntaxUID == JPEG_LS
        (codestream,) = generate_frames(original.PixelData, number_of_frames=1)
        pixels = np.frombuffer(ds.PixelData, "<u2").reshape(ds.Rows, ds.Columns)
        assert np.array_equal(pixels, imagecodecs.jpegls_decode(codestream))  # lossless
        assert ds.PatientID == original.PatientID and ds.Rows == original.Rows


def test_q_values_choose_between_stored_and_little_endian(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    sop = sorted(stored_files(wado.study, wado.study.series_uids[1]))[0]
    url = wado.url(f"{wado.series_path()}/instances/{sop}")
    prefers_native = (
        "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80; "
        "q=0.4, multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    )
    response = client.get(url, headers=headers(token, wado.study.kos_sop_uid, prefers_native))
    assert response.status_code == 200
    assert read_parts(response)[0].headers["content-type"].endswith(EXPLICIT_LE)
    any_syntax = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    response = client.get(url, headers=headers(token, wado.study.kos_sop_uid, any_syntax))
    assert read_parts(response)[0].headers["content-type"].endswith(JPEG_LS)


def test_series_metadata_after_the_same_checks(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    url = wado.url(wado.series_path() + "/metadata")
    response = client.get(url, headers=headers(token, wado.study.kos_sop_uid, "*/*"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    sops = {row["00080018"]["Value"][0] for row in response.json()}
    assert sops == set(stored_files(wado.study, wado.study.series_uids[1]))
    assert_error(client.get(url, headers=headers("nope", wado.study.kos_sop_uid)), 403, "S403")


# -- refusals (spec Tableau 2) --------------------------------------------------------------


def test_missing_invalid_or_expired_token_is_403(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    url = wado.url(wado.series_path())
    kos = wado.study.kos_sop_uid
    assert_error(client.get(url, headers={"KOS-SOPInstanceUID": kos}), 403, "S403")
    assert_error(client.get(url, headers=headers("not-a-token", kos)), 403, "S403")
    basic = {"Authorization": "Basic ZHI6cmFkaW9sb2d1ZQ==", "KOS-SOPInstanceUID": kos}
    assert_error(client.get(url, headers=basic), 403, "S403")
    fresh = psc_access_token(wado.stack)
    wado.clock.offset = 3600.0  # the provider's token lifetime (120 s) is long past
    try:
        assert_error(client.get(url, headers=headers(fresh, kos)), 403, "S403")
    finally:
        wado.clock.offset = 0.0


def assert_refused_token(wado: WadoStack, response: httpx.Response, reason: str) -> None:
    """403 S403 and nothing else: the body says neither which check failed nor who."""
    assert_error(response, 403, "S403")
    assert response.json() == {"code": "S403", "message": "Jeton d'accès invalide ou expiré."}
    entry = [e for e in read_audit(wado) if e["event"] == "source_retrieve_refused"][-1]
    assert entry["code"] == "S403" and reason in entry["reason"]
    assert entry["client_id"] == CLIENT_ID and is_pseudonym(entry["actor"])


def test_a_token_without_scope_all_is_403(wado: WadoStack, client: httpx.Client) -> None:
    narrow = psc_access_token(wado.stack, scope="openid")
    response = client.get(wado.url(wado.series_path()), headers=headers(narrow, "1.2.3"))
    assert_refused_token(wado, response, "scope_all")


def test_a_token_issued_to_a_client_outside_the_allow_list_is_403(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    services = services_of(wado.app)
    others = dataclasses.replace(services.settings, source_api_clients="another-consumer")
    wado.app.state.services = dataclasses.replace(services, settings=others)
    try:
        url = wado.url(wado.series_path())
        response = client.get(url, headers=headers(token, wado.study.kos_sop_uid))
        assert_refused_token(wado, response, "DRIMBOX_SOURCE_API_CLIENTS")
        metadata = client.get(url + "/metadata", headers=headers(token, wado.study.kos_sop_uid))
        assert_refused_token(wado, metadata, "DRIMBOX_SOURCE_API_CLIENTS")
    finally:
        wado.app.state.services = services
    allowed = client.get(wado.url(wado.series_path()), headers=headers(token, "1.2.3"))
    assert_error(allowed, 404, "S404")  # the same token, allowed again: on to the KOS check


def test_unknown_or_inconsistent_kos_is_404(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    kos = wado.study.kos_sop_uid
    series = wado.series_path()
    assert_error(client.get(wado.url(series), headers=headers(token, "1.2.3.4.5")), 404, "S404")
    no_kos = {"Authorization": f"Bearer {token}"}
    assert_error(client.get(wado.url(series), headers=no_kos), 404, "S404")
    # The KOS's own series (KO) is in the PACS but not referenced by the KOS.
    kos_series = str(pydicom.dcmread(wado.study.kos_path).SeriesInstanceUID)
    unreferenced = f"/studies/{wado.study.study_uid}/series/{kos_series}"
    assert_error(client.get(wado.url(unreferenced), headers=headers(token, kos)), 404, "S404")
    # Another study with this KOS.
    other = wado.series_path(wado.other_study)
    assert_error(client.get(wado.url(other), headers=headers(token, kos)), 404, "S404")
    # An instance of the topogram asked under the axial series.
    topo_sop = sorted(stored_files(wado.study, wado.study.series_uids[0]))[0]
    wrong_instance = wado.url(f"{series}/instances/{topo_sop}")
    assert_error(client.get(wrong_instance, headers=headers(token, kos)), 404, "S404")


def test_unpublished_kos_is_410(wado: WadoStack, client: httpx.Client, token: str) -> None:
    kos = wado.study.kos_sop_uid
    set_state(wado.archive_url, kos, published=False, cda_id=DEMO_CDA_ID)
    try:
        response = client.get(wado.url(wado.series_path()), headers=headers(token, kos))
        assert_error(response, 410, "S410")
    finally:
        set_state(wado.archive_url, kos, published=True, cda_id=DEMO_CDA_ID)
    response = client.get(wado.url(wado.series_path()), headers=headers(token, kos))
    assert response.status_code == 200


def test_patient_id_mismatch_is_406_and_audited(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    response = client.get(wado.url(wado.series_path()), headers=headers(token, WRONG_PATIENT_KOS))
    assert_error(response, 406, "S406")
    entry = [e for e in read_audit(wado) if e["event"] == "source_patient_id_mismatch"][-1]
    assert entry["kos_sop_uid"] == WRONG_PATIENT_KOS
    text = wado.audit_log.read_text(encoding="utf-8")
    assert wado.study.patient.ins not in text and "100000000000000" not in text


def test_pacs_down_is_502(wado: WadoStack, client: httpx.Client, token: str) -> None:
    """The KOS archive says which location (PACS) holds the exam; that PACS is down."""
    url = wado.url(wado.series_path(wado.other_study))
    response = client.get(url, headers=headers(token, wado.other_study.kos_sop_uid))
    assert_error(response, 502, "S502")


def test_the_kos_location_decides_the_pacs_whatever_the_host(
    wado: WadoStack, client: httpx.Client, token: str
) -> None:
    """The DRIMbox-to-DRIMbox API answers for every connected PACS: the exam is streamed
    from its KOS's location even when asked through another host name."""
    url = wado.url(wado.series_path(), host=DEAD_LOCATION)
    response = client.get(url, headers=headers(token, wado.study.kos_sop_uid))
    assert response.status_code == 200


def test_only_the_mutual_tls_listener_answers(wado: WadoStack, token: str) -> None:
    """The Source API asked on the BFF's own listener (no client certificate): 404."""
    url = f"{wado.stack.bff_url(LOCATION)}/api/source{wado.series_path()}"
    with httpx.Client(transport=LoopbackTransport(), timeout=60) as plain:
        response = plain.get(url, headers=headers(token, wado.study.kos_sop_uid))
    assert_error(response, 404, "E404")


def test_a_client_certificate_the_whitelist_does_not_list_is_403(
    wado: WadoStack, token: str, tmp_path: Path
) -> None:
    """Issue 13 item 7: a certificate from the trusted CA (the handshake succeeds) whose
    subject is no whitelisted operator certificate: 403 S403L before anything else (not
    even the token is introspected), no image byte, audited with the certificate."""
    intruder = from_test_ca(wado.pki, tmp_path, "intrus.localhost", client=True)
    pki = {**wado.pki, "intruder": intruder}
    transport = LoopbackTransport(verify=consumer_tls(pki, "intruder"))
    with httpx.Client(transport=transport, timeout=60) as other:
        response = other.get(
            wado.url(wado.series_path()), headers=headers(token, wado.study.kos_sop_uid)
        )
        metadata = other.get(
            wado.url(wado.series_path() + "/metadata"),
            headers=headers(token, wado.study.kos_sop_uid),
        )
    assert_error(response, 403, "S403L")
    assert_error(metadata, 403, "S403L")
    assert b"DICM" not in response.content
    entry = [e for e in read_audit(wado) if e["event"] == "source_retrieve_refused"][-1]
    assert entry["code"] == "S403L"
    assert entry["peer_certificate_dn"] == "CN=intrus.localhost,O=DRIMbox viewer tests,C=FR"
    assert entry.get("actor") is None  # refused before the token was looked at


def read_audit(wado: WadoStack) -> list[dict[str, Any]]:
    lines = wado.audit_log.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]
