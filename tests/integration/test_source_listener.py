"""The Source role's mutual-TLS listener (issue 13 item 7), a real uvicorn server started
as ``drimbox-viewer serve`` starts it (:func:`bff.source.listener.source_api_options`):
TLS 1.2+ with forward secrecy and AEAD only, nothing but the Source API on that port,
and the client certificate handed to the application (the ASGI ``tls`` extension) for
the whitelist check and the audit trail. The full Source API behind it (a listed and an
unlisted Consumer certificate, the audit of a retrieval) is in test_source_wado.py."""

from __future__ import annotations

import json
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bff.app import create_app
from bff.demo.pki import TlsFiles, make_test_pki
from bff.settings import Settings
from bff.source.listener import source_api_options
from tests.conftest import make_settings
from tests.consumer_stack import whitelisted
from tests.servers import free_port, live_server

pytestmark = pytest.mark.integration

ADMIN_SECRET = "admin-secret-for-the-listener-test"
API_PATH = "/api/source/studies/1.2.3/series/4.5.6"


@dataclass(frozen=True)
class Listener:
    settings: Settings
    pki: dict[str, TlsFiles]
    audit_log: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.settings.source_api_port}"

    def context(
        self, client: str | None = "client", *, tls: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki["server"].ca_cert))
        if client is not None:
            context.load_cert_chain(self.pki[client].cert, self.pki[client].key)
        if tls is not None:
            context.maximum_version = tls
        return context

    def get(self, path: str, context: ssl.SSLContext, **kwargs: object) -> httpx.Response:
        with httpx.Client(verify=context, timeout=10) as client:
            return client.get(self.url + path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    work = tmp_path_factory.mktemp("listener")
    pki = make_test_pki(work / "pki", server_names=("localhost",))
    bff_port, api_port = free_port(), free_port()
    settings = make_settings(
        f"http://127.0.0.1:{free_port()}/dicom-web",  # no PACS: nothing gets that far
        port=bff_port,
        open_access=False,
        admin_secret=ADMIN_SECRET,
        transcode_workers=1,
        audit_log=work / "audit.jsonl",
        source_api_port=api_port,
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(pki["client"].ca_cert),
        **whitelisted(work, ["consumer.localhost"]),
    )
    app = create_app(settings)
    with live_server(app, port=bff_port, also=[source_api_options(app, settings)]):
        yield Listener(settings, pki, work / "audit.jsonl")


# -- TLS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_clients_connect(listener: Listener, version: ssl.TLSVersion) -> None:
    with httpx.Client(verify=listener.context(tls=version), timeout=10) as client:
        answer = client.get(listener.url + "/")
        negotiated = answer.extensions["network_stream"].get_extra_info("ssl_object").version()
    assert answer.status_code == 404
    assert negotiated == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_below_1_2_is_refused(listener: Listener, version: ssl.TLSVersion) -> None:
    with warnings.catch_warnings():  # an old client on purpose: Python warns of it
        warnings.simplefilter("ignore", DeprecationWarning)
        context = listener.context(tls=version)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")  # this client would accept anything
    with pytest.raises(httpx.ConnectError):
        listener.get("/", context)


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-SHA256",  # CBC (Lucky 13 family), Python's default accepts it
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",  # SHA-1 MAC
    ],
)
def test_tls12_suites_without_aead_are_refused(listener: Listener, cipher: str) -> None:
    context = listener.context(tls=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(cipher)
    with pytest.raises(httpx.ConnectError):
        listener.get("/", context)


@pytest.mark.parametrize("client", [None, "untrusted_client"])
def test_a_client_certificate_from_the_ca_is_required(
    listener: Listener, client: str | None
) -> None:
    context = listener.context(client=None)
    if client is not None:
        context.load_cert_chain(listener.pki[client].cert, listener.pki[client].key)
    # TLS 1.3: the refusal shows at the first read, as a reset or a TLS alert.
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        listener.get(API_PATH, context)


# -- only the Source API ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/viewer",
        "/app-config.js",
        "/api/admin/kos",
        "/api/session",
        "/api/consumer/kos",
        "/dicomweb/studies",
        "/auth/jwks",
        "/consumer",
        "/api/source",
        "/api/source/studies/1.2.3",
        API_PATH + "/thumbnail",
        API_PATH + "/instances/7.8/frames/1",
    ],
)
def test_only_the_source_api_is_served(listener: Listener, path: str) -> None:
    """The admin API, OHIF, the login and the facade do not exist on this port."""
    answer = listener.get(
        path, listener.context(), headers={"Authorization": f"Bearer {ADMIN_SECRET}"}
    )
    assert answer.status_code == 404, (path, answer.status_code)
    assert answer.json() == {"code": "E404", "message": "L'élément demandé est introuvable."}
    assert answer.headers["x-error-code"] == "E404"


def test_the_admin_api_answers_on_the_main_port_only(listener: Listener) -> None:
    """The test's own control: the admin API is there, on the BFF's listener."""
    with httpx.Client(timeout=10) as client:
        answer = client.get(
            f"http://127.0.0.1:{listener.settings.port}/api/admin/kos",
            headers={"Authorization": f"Bearer {ADMIN_SECRET}"},
        )
    assert answer.status_code == 200


# -- the client certificate, to the application ------------------------------------------------


def test_the_client_certificate_reaches_the_application(listener: Listener) -> None:
    """A whitelisted Consumer without a token: past the certificate check (the listener
    put the certificate in the scope), refused on the token, audited with its DN."""
    answer = listener.get(API_PATH, listener.context(), headers={"KOS-SOPInstanceUID": "1.2"})
    assert answer.status_code == 403 and answer.json()["code"] == "S403"
    lines = listener.audit_log.read_text(encoding="utf-8").splitlines()
    entry = [json.loads(line) for line in lines][-1]
    assert entry["event"] == "source_retrieve_refused" and entry["code"] == "S403"
    assert entry["peer_certificate_dn"] == "CN=consumer.localhost,O=DRIMbox viewer tests,C=FR"
    assert entry["whitelist_id"] == "DRIMBOX-TEST-001"
