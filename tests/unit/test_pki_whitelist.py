"""Test PKI (mutual TLS between DRIMboxes, spec E202, FACTS 1); the ANS whitelist is
tested in test_whitelist.py."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bff.demo.pki import TlsFiles, issue, make_ca, make_test_pki

# --- PKI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_pki_files_and_key_permissions(pki: dict[str, TlsFiles]) -> None:
    assert set(pki) == {
        "server",
        "client",
        "untrusted_server",
        "untrusted_client",
        "expired_server",
    }
    for files in pki.values():
        assert files.cert.is_file() and files.ca_cert.is_file()
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in files.key.read_bytes()
    ca_key = pki["server"].ca_cert.with_suffix(".key")
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    assert pki["untrusted_server"].ca_cert != pki["server"].ca_cert
    ca = _cert(pki["server"].ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert dt.timedelta(days=1) <= ca.not_valid_after_utc - ca.not_valid_before_utc
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= dt.timedelta(days=30)


def test_existing_key_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "drimbox-test-ca.key").write_bytes(b"old")
    (tmp_path / "drimbox-test-ca.key").chmod(0o644)
    _, key = make_ca(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_server_cert_verifies_against_test_ca_only(pki: dict[str, TlsFiles]) -> None:
    store = Store([_cert(pki["server"].ca_cert)])
    for host in ("localhost", "db1.localhost"):
        verifier = (
            PolicyBuilder().store(store).time(_now()).build_server_verifier(x509.DNSName(host))
        )
        chain = verifier.verify(_cert(pki["server"].cert), [])
        assert chain[-1] == _cert(pki["server"].ca_cert)
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(_now())
        .build_server_verifier(x509.DNSName("other.localhost"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["server"].cert), [])
    verifier = (
        PolicyBuilder().store(store).time(_now()).build_server_verifier(x509.DNSName("localhost"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["untrusted_server"].cert), [])
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["expired_server"].cert), [])
    # A client certificate (clientAuth only) is no server certificate.
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["client"].cert), [])


def test_client_cert_verifies_against_test_ca_only(pki: dict[str, TlsFiles]) -> None:
    store = Store([_cert(pki["client"].ca_cert)])
    verifier = PolicyBuilder().store(store).time(_now()).build_client_verifier()
    verified = verifier.verify(_cert(pki["client"].cert), [])
    assert x509.DNSName("consumer.localhost") in (verified.subjects or [])
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["untrusted_client"].cert), [])
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki["server"].cert), [])  # serverAuth only


def test_expired_cert_ended_yesterday(pki: dict[str, TlsFiles]) -> None:
    cert = _cert(pki["expired_server"].cert)
    ended = _now() - cert.not_valid_after_utc
    assert dt.timedelta(hours=23) < ended < dt.timedelta(days=1, hours=1)


def test_issue_needs_a_usage(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with pytest.raises(ValueError):
        issue(tmp_path, ca, common_name="x.localhost", name="x")


# --- a real mutual TLS handshake -------------------------------------------------------


class _OneShotTlsServer:
    """Accepts one connection, completes the handshake and sends b"OK" (else records
    the failure)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port: int = self.listener.getsockname()[1]
        self.context = context
        self.error: BaseException | None = None
        self.peer_cert: dict[str, object] | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.peer_cert = dict(tls.getpeercert() or {})
                tls.sendall(b"OK")
        except BaseException as exc:  # recorded for the test
            self.error = exc
        finally:
            self.listener.close()

    def join(self) -> None:
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def _server_context(server: TlsFiles, client_ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.cert, server.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(client_ca)
    return context


def _client_context(ca: Path, client: TlsFiles | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def _connect(port: int, context: ssl.SSLContext, host: str = "db1.localhost") -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        # TLS 1.3: a refused client certificate only shows up at the first read.
        return tls.recv(2)


@pytest.fixture
def serve(pki: dict[str, TlsFiles]) -> Iterator[_OneShotTlsServer]:
    server = _OneShotTlsServer(_server_context(pki["server"], pki["client"].ca_cert))
    yield server
    server.join()


def test_mutual_tls_ok(pki: dict[str, TlsFiles], serve: _OneShotTlsServer) -> None:
    data = _connect(serve.port, _client_context(pki["client"].ca_cert, pki["client"]))
    serve.join()
    assert data == b"OK"
    assert serve.error is None
    assert serve.peer_cert is not None
    assert ("DNS", "consumer.localhost") in serve.peer_cert["subjectAltName"]  # type: ignore[operator]


@pytest.mark.parametrize("client_key", [None, "untrusted_client"])
def test_mutual_tls_refuses_client(
    pki: dict[str, TlsFiles], serve: _OneShotTlsServer, client_key: str | None
) -> None:
    client = None if client_key is None else pki[client_key]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _connect(serve.port, _client_context(pki["server"].ca_cert, client))
    serve.join()
    assert isinstance(serve.error, ssl.SSLError)


@pytest.mark.parametrize(
    ("server_key", "reason"),
    [("untrusted_server", "unable to get local issuer"), ("expired_server", "expired")],
)
def test_client_refuses_server(pki: dict[str, TlsFiles], server_key: str, reason: str) -> None:
    server = _OneShotTlsServer(_server_context(pki[server_key], pki["client"].ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        _connect(server.port, _client_context(pki["client"].ca_cert, pki["client"]))
    server.join()
    assert reason in str(caught.value.verify_message)
    assert server.error is not None


def test_client_refuses_wrong_host_name(pki: dict[str, TlsFiles], serve: _OneShotTlsServer) -> None:
    context = _client_context(pki["client"].ca_cert, pki["client"])
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _connect(serve.port, context, host="db2.localhost")
