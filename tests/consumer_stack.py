"""Consumer -> Source (both this project, real mutual TLS with a test CA) -> Orthanc,
plus a misbehaving Source double speaking real HTTPS for the faults of Tableau 2."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import UID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bff.app import create_app
from bff.demo.dataset import DemoStudy
from bff.demo.kos import retarget_kos
from bff.demo.orthanc import OrthancProcess
from bff.demo.pki import TlsFiles, issue, make_test_pki, make_whitelist_signer
from bff.demo.stack import DEMO_CDA_ID, DEMO_USERS_FILE, Stack, new_stack, publish_demo_kos
from bff.demo.whitelist import write_test_whitelist
from bff.dicomweb.multipart import closing_delimiter, encode_part
from bff.idp.app import create_idp_app
from bff.idp.users import load_users
from bff.services import services_of
from bff.source.listener import source_api_options
from tests.conftest import Pacs, make_settings
from tests.servers import free_port, live_server

SOURCE_LOCATION = "vi1.localhost"
CONSUMER_HOST = "co.localhost"
BOUNDARY = "drimbox-fake-source"


def mtls(files: TlsFiles, client_ca: Path) -> dict[str, Any]:
    """uvicorn options of a plain listener that requires a client certificate (the
    misbehaving Source double; this project's Source uses its own listener)."""
    return {
        "ssl_certfile": str(files.cert),
        "ssl_keyfile": str(files.key),
        "ssl_ca_certs": str(client_ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }


def from_test_ca(
    pki: dict[str, TlsFiles], directory: Path, common_name: str, **usage: Any
) -> TlsFiles:
    """Another certificate from the test CA, for ``common_name`` (loopback too): valid for
    TLS, but not one the test whitelist lists (``organization`` or name differ)."""
    ca = (pki["server"].ca_cert, pki["server"].ca_cert.with_suffix(".key"))
    return issue(
        directory,
        ca,
        common_name=common_name,
        dns_names=(common_name,),
        ip_addresses=("127.0.0.1",),
        name=f"{common_name}-{usage.get('organization', 'test')}",
        **usage,
    )


def whitelisted(work: Path, hosts: list[str]) -> dict[str, Any]:
    """A test whitelist listing ``hosts`` (their test certificate DNs), signed by a
    throw-away key: the settings that load it."""
    signer = make_whitelist_signer(work / "signer")
    path = work / "whitelist.xml"
    write_test_whitelist(path, hosts, signer)
    return {"whitelist_file": str(path), "whitelist_signer_cert": str(signer.cert)}


@dataclass
class FakeSourceMode:
    """What the misbehaving Source does next (tests set it)."""

    #: 'ok'; 'status:<n>' (answers that HTTP status); 'sop_class' / 'syntax' (instances
    #: the Consumer must refuse, E301 / E302); in the middle of a series (before its 4th
    #: instance): 'truncate' (ends the answer without the closing delimiter), 'drop'
    #: (closes the connection), 'stall' (stops sending); 'extra': every instance of the
    #: study for any series asked (a Source sending more than the KOS grants).
    mode: str = "ok"
    requests: list[str] = field(default_factory=list)
    #: Paths of the stalled streams the client closed (it gave up waiting).
    hung_up: list[str] = field(default_factory=list)


def _series_files(study: DemoStudy, series_uid: str) -> list[Path]:
    out = []
    for path in study.instance_files:
        if str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID) == series_uid:
            out.append(path)
    return out


def _spoiled(data: bytes, mode: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    if mode == "sop_class":  # Raw Data Storage: neither Tableau 4 nor Basic Image Review
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.66")
        del ds.PixelData
        for keyword in (
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "HighBit",
            "SamplesPerPixel",
            "PhotometricInterpretation",
            "PixelRepresentation",
        ):
            if keyword in ds:
                delattr(ds, keyword)
    elif mode == "syntax":  # Deflated Explicit VR LE: outside the DRIM-M list (E302)
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1.99")
        ds.PixelData = b"\0" * 16
        ds.Rows, ds.Columns = 2, 4
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class SourceDropped(Exception):
    """Raised by the stand-in mid-stream: uvicorn then closes the connection without the
    end of the chunked body, as a Source that crashes or loses its network does."""


def fake_source_app(study: DemoStudy, state: FakeSourceMode) -> Starlette:
    async def series(request: Request) -> Response:
        state.requests.append(request.url.path)
        mode = state.mode
        if mode.startswith("status:"):
            return Response(b"", int(mode.split(":")[1]))
        files = _series_files(study, request.path_params["series_uid"])
        if mode == "extra":  # more than the series asked: every instance of the study
            files = list(study.instance_files)

        async def body() -> AsyncIterator[bytes]:
            for index, path in enumerate(files):
                data = path.read_bytes()
                if mode in ("sop_class", "syntax"):
                    data = _spoiled(data, mode)
                if mode == "drop" and index == 3:
                    part = encode_part(data, "application/dicom", BOUNDARY)
                    yield part[: len(part) // 2]
                    raise SourceDropped("the stand-in Source drops the connection mid-series")
                if mode in ("truncate", "stall") and index == 3:
                    if mode == "stall":
                        try:
                            await asyncio.sleep(30)  # past any timeout of the Consumer
                        except asyncio.CancelledError:  # the client hung up
                            state.hung_up.append(request.url.path)
                            raise
                    part = encode_part(data, "application/dicom", BOUNDARY)
                    yield part[: len(part) // 2]
                    return
                yield encode_part(data, "application/dicom", BOUNDARY)
                await asyncio.sleep(0)
            yield closing_delimiter(BOUNDARY)

        return StreamingResponse(
            body(), media_type=f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        )

    async def no_metadata(request: Request) -> Response:
        state.requests.append(request.url.path)
        return Response(b"", 404)  # this Source offers no /metadata

    return Starlette(
        routes=[
            # A first path segment per test keeps Sources (and so caches) apart.
            Route(
                "/{tag}/api/source/studies/{study_uid}/series/{series_uid}/metadata", no_metadata
            ),
            Route("/{tag}/api/source/studies/{study_uid}/series/{series_uid}", series),
        ]
    )


@dataclass(frozen=True)
class DrimmStack:
    stack: Stack
    study: DemoStudy
    source_api: str  # https://localhost:PORT/api/source (the real Source, this project)
    fake_port: int  # the misbehaving double
    fake: FakeSourceMode
    #: Ports the Consumer may reach Sources on (DRIMBOX_SOURCE_PORTS) that nothing listens
    #: on at first: for tests that start a Source of their own, or none.
    spare_ports: tuple[int, ...]
    consumer_url: str  # http://co.localhost:PORT
    consumer_app: Starlette
    handover_secret: str
    pki: dict[str, TlsFiles]
    work: Path
    #: DB.VI-CO.42: the practice's PACS the Consumer exports to (its ports: HTTP for
    #: STOW-RS, DICOM for C-STORE; a test starts it, :func:`practice_pacs`), and a port
    #: where no PACS listens (destinations "down").
    export_ports: tuple[int, int] = (0, 0)
    export_down_port: int = 0
    #: where a test may start a STOW-RS double (destination EXPORT_STOW_PARTIAL), and
    #: one over https (EXPORT_STOW_TLS, EXPORT_STOW_TLS_UNTRUSTED; pki['server'])
    export_double_port: int = 0
    export_tls_port: int = 0

    def fake_api(self) -> str:
        """A fresh base URL on the misbehaving Source (a new Source for the cache)."""
        return f"https://localhost:{self.fake_port}/{secrets.token_hex(4)}/api/source"

    def kos_for(self, base: str) -> bytes:
        return retarget_kos(self.study.kos_path.read_bytes(), base)


#: The practice PACS's AE title (what the Consumer calls) and the Consumer's own.
PRACTICE_AET = "CABINET"
CONSUMER_AET = "DRIMBOX-CO"
#: The export destinations the test Consumer offers, in order (DRIMBOX_EXPORT_DESTINATIONS
#: ids '1' to '9'): the practice's PACS by STOW-RS and C-STORE, each down, each refusing
#: (a DICOMweb path it does not serve, an AE title it is not), a STOW-RS double that
#: stores some instances only, over http, and over https with the CA given ('ca_file') or
#: not (the system's trust store, which does not know the test CA).
EXPORT_STOW, EXPORT_CSTORE, EXPORT_STOW_DOWN, EXPORT_CSTORE_DOWN = "1", "2", "3", "4"
EXPORT_STOW_REFUSED, EXPORT_CSTORE_REFUSED, EXPORT_STOW_PARTIAL = "5", "6", "7"
EXPORT_STOW_TLS, EXPORT_STOW_TLS_UNTRUSTED = "8", "9"


def export_destinations(
    http_port: int,
    dicom_port: int,
    down_port: int,
    double_port: int = 0,
    tls_port: int = 0,
    ca_file: str = "",
) -> str:
    tls_url = f"https://localhost:{tls_port or down_port}/dicom-web"
    return json.dumps(
        [
            {
                "name": "PACS du cabinet",
                "protocol": "stow",
                "url": f"http://127.0.0.1:{http_port}/dicom-web",
            },
            {
                "name": "Station du cabinet (DICOM)",
                "protocol": "cstore",
                "host": "127.0.0.1",
                "port": dicom_port,
                "called_ae": PRACTICE_AET,
                "calling_ae": CONSUMER_AET,
            },
            {
                "name": "PACS éteint",
                "protocol": "stow",
                "url": f"http://127.0.0.1:{down_port}/dicom-web",
            },
            {
                "name": "Station éteinte",
                "protocol": "cstore",
                "host": "127.0.0.1",
                "port": down_port,
                "called_ae": PRACTICE_AET,
                "calling_ae": CONSUMER_AET,
            },
            {
                "name": "PACS sans DICOMweb",
                "protocol": "stow",
                "url": f"http://127.0.0.1:{http_port}/pas-de-dicom-web",
            },
            {
                "name": "Station mal configurée",
                "protocol": "cstore",
                "host": "127.0.0.1",
                "port": dicom_port,
                "called_ae": "INCONNU",
                "calling_ae": CONSUMER_AET,
            },
            {
                "name": "PACS partiel",
                "protocol": "stow",
                "url": f"http://127.0.0.1:{double_port or down_port}/dicom-web",
            },
            {
                "name": "PACS partiel (https)",
                "protocol": "stow",
                "url": tls_url,
                "ca_file": ca_file,
            },
            {"name": "PACS au certificat inconnu", "protocol": "stow", "url": tls_url},
        ]
    )


@contextmanager
def practice_pacs(drimm: DrimmStack, directory: Path) -> Iterator[OrthancProcess]:
    """A second real Orthanc, the practice's PACS (DB.VI-CO.42): STOW-RS on its DICOMweb
    port, C-STORE on its DICOM port (AE title :data:`PRACTICE_AET`), empty at start."""
    http_port, dicom_port = drimm.export_ports
    with OrthancProcess(
        directory, http_port=http_port, dicom_port=dicom_port, aet=PRACTICE_AET, name="CABINET"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def drimm(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrimmStack]:
    work = tmp_path_factory.mktemp("drimm")
    pki = make_test_pki(work / "pki", server_names=("localhost",))
    bff_port, api_port, idp_port, co_port, fake_port = (free_port() for _ in range(5))
    spare_ports = (free_port(), free_port(), free_port())
    export_ports = (free_port(), free_port())
    export_down_port = free_port()
    export_double_port = free_port()
    export_tls_port = free_port()
    # The whitelist names the Source ('localhost': its server certificate) and the
    # Consumer (its client certificate), both roles load it.
    trust = whitelisted(work, ["localhost", "consumer.localhost"])
    consumer_url = f"http://{CONSUMER_HOST}:{co_port}"
    stack = new_stack(bff_port, idp_port, (SOURCE_LOCATION,), extra_origins=(consumer_url,))
    archive_url = f"sqlite:///{work / 'source-archive.db'}"
    publish_demo_kos(archive_url, pacs.study.kos_path, location=SOURCE_LOCATION, cda_id=DEMO_CDA_ID)
    users = load_users(DEMO_USERS_FILE)
    idp = create_idp_app(users, stack.idp_clients(), issuer_base=stack.issuer_base)
    client_ca = pki["client"].ca_cert
    source_settings = make_settings(
        pacs.dicomweb_url,
        **stack.bff_overrides(),
        open_access=False,
        locations=f"{SOURCE_LOCATION}={pacs.dicomweb_url}",
        archive_url=archive_url,
        audit_log=work / "source-audit.jsonl",
        source_api_port=api_port,
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(client_ca),
        **trust,
    )
    secret = "handover-" + stack.client_secret
    # The Consumer runs beside a PACS that holds the very study (issue 12: a KOS-opened
    # study must never be answered from it).
    consumer_settings = make_settings(
        pacs.dicomweb_url,
        **{**stack.bff_overrides(), "port": co_port},
        open_access=False,
        locations=f"{CONSUMER_HOST}={pacs.dicomweb_url}",
        archive_url=f"sqlite:///{work / 'consumer-archive.db'}",
        audit_log=work / "consumer-audit.jsonl",
        consumer_enabled=True,
        consumer_handover_secret=secret,
        source_client_cert=str(pki["client"].cert),
        source_client_key=str(pki["client"].key),
        source_ca_bundle=str(pki["server"].ca_cert),
        **trust,
        source_ports=",".join(map(str, (api_port, fake_port, *spare_ports))),
        source_timeout=3.0,
        frame_wait_timeout=8.0,
        export_destinations=export_destinations(
            *export_ports,
            export_down_port,
            export_double_port,
            export_tls_port,
            str(pki["server"].ca_cert),
        ),
        export_timeout=5.0,
    )
    source_app = create_app(source_settings)
    consumer_app = create_app(consumer_settings)
    fake = FakeSourceMode()
    with (
        live_server(idp, port=idp_port),
        # The Source's two listeners share one event loop, as `drimbox-viewer serve` runs them.
        live_server(
            source_app,
            port=bff_port,
            also=[source_api_options(source_app, source_settings)],
        ),
        live_server(
            fake_source_app(pacs.study, fake),
            port=fake_port,
            lifespan="off",
            **mtls(pki["server"], client_ca),
        ),
        live_server(consumer_app, port=co_port),
    ):
        yield DrimmStack(
            stack=stack,
            study=pacs.study,
            source_api=f"https://localhost:{api_port}/api/source",
            fake_port=fake_port,
            fake=fake,
            spare_ports=spare_ports,
            consumer_url=consumer_url,
            consumer_app=consumer_app,
            handover_secret=secret,
            pki=pki,
            work=work,
            export_ports=export_ports,
            export_down_port=export_down_port,
            export_double_port=export_double_port,
            export_tls_port=export_tls_port,
        )


@contextmanager
def source_requests(drimm: DrimmStack, token: str) -> Iterator[list[str]]:
    """The paths the Consumer asks of its Sources with the PSC ``token`` while the block
    runs, as its client sends them (httpx's request hook): one session's requests only,
    whatever other tests' retrievals still do."""
    client = services_of(drimm.consumer_app).origins._client
    assert client is not None
    asked: list[str] = []

    async def record(request: httpx.Request) -> None:
        if request.headers.get("authorization") == f"Bearer {token}":
            asked.append(request.url.path)

    client.event_hooks["request"].append(record)
    try:
        yield asked
    finally:
        client.event_hooks["request"].remove(record)
