"""Test PKI (mutual TLS between DRIMboxes) and the ANS whitelist (spec E202/E203, FACTS 1)."""

from __future__ import annotations

import datetime as dt
import logging
import re
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
from bff.origins import whitelist as wl
from bff.origins.whitelist import (
    SignatureTrust,
    WhitelistError,
    WhitelistSignatureError,
    load_whitelist,
    parse_whitelist,
    verify_signature,
    write_test_whitelist,
)

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


# --- whitelist ------------------------------------------------------------------------

SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ans:ListeBlancheDRIM-M xmlns:ans="urn:ans:drim-m:liste-blanche" versionFormat="1.0.0"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ans:DateDeGeneration>2025-03-01T08:00:00+01:00</ans:DateDeGeneration>
  <ans:ListeDomaines>
    <ans:Domaine>
      <ans:Identifiant>DRIMBOX-111-01</ans:Identifiant>
      <ans:db>DB1.111.mesimagesmedicales.fr</ans:db>
      <ans:vi>vi1.111.mesimagesmedicales.fr</ans:vi>
      <ans:Denomination>Centre de radiologie Ambroise</ans:Denomination>
      <ans:DNCertificatOperateur>CN=db1.111.mesimagesmedicales.fr,O=CRA,C=FR</ans:DNCertificatOperateur>
      <ans:SupportContact>support@cra.example</ans:SupportContact>
      <ans:DateMAJ>2025-02-20</ans:DateMAJ>
    </ans:Domaine>
    <Domaine xmlns="urn:other">
      <Identifiant>DRIMBOX-222-01</Identifiant>
      <db>db1.localhost</db>
      <vi>vi1.localhost</vi>
      <Denomination>H\xc3\xb4pital de test</Denomination>
      <DNCertificatOperateur>CN=db1.localhost</DNCertificatOperateur>
      <SupportContact>01 02 03 04 05</SupportContact>
      <DateMAJ>2025-02-21</DateMAJ>
    </Domaine>
    <ans:Domaine>
      <ans:Identifiant>WILDCARD</ans:Identifiant>
      <ans:db>*.example.fr</ans:db>
    </ans:Domaine>
    <ans:Domaine>
      <ans:Identifiant>NO-DB</ans:Identifiant>
      <ans:vi>vi9.example.fr</ans:vi>
    </ans:Domaine>
  </ans:ListeDomaines>
  <ds:Signature><ds:SignedInfo/></ds:Signature>
</ans:ListeBlancheDRIM-M>
"""


def test_parse_realistic_sample_with_namespaces() -> None:
    parsed = parse_whitelist(SAMPLE)
    assert parsed.generated_at == "2025-03-01T08:00:00+01:00"
    # The wildcard entry and the entry without <db> are dropped: they can never match.
    assert [e.identifiant for e in parsed.entries] == ["DRIMBOX-111-01", "DRIMBOX-222-01"]
    first = parsed.entries[0]
    assert first.db == "db1.111.mesimagesmedicales.fr"
    assert first.vi == "vi1.111.mesimagesmedicales.fr"
    assert first.denomination == "Centre de radiologie Ambroise"
    assert first.dn_certificat_operateur == "CN=db1.111.mesimagesmedicales.fr,O=CRA,C=FR"
    assert first.support_contact == "support@cra.example"
    assert first.date_maj == "2025-02-20"
    assert parsed.entries[1].denomination == "Hôpital de test"


@pytest.mark.parametrize(
    ("host", "identifiant"),
    [
        ("db1.111.mesimagesmedicales.fr", "DRIMBOX-111-01"),
        ("DB1.111.MesImagesMedicales.FR", "DRIMBOX-111-01"),
        ("db1.111.mesimagesmedicales.fr.", "DRIMBOX-111-01"),
        ("db1.localhost", "DRIMBOX-222-01"),
        ("evil-db1.localhost", None),
        ("db1.localhost.evil", None),
        ("xdb1.localhost", None),
        ("localhost", None),
        ("111.mesimagesmedicales.fr", None),
        ("vi1.111.mesimagesmedicales.fr", None),  # the viewer name does not open retrieval
        ("db1.localhost:443", None),
        ("anything.example.fr", None),  # the wildcard entry was dropped
        ("*.example.fr", None),
        ("", None),
        ("127.0.0.1", None),
    ],
)
def test_allows_host_exact_match_only(host: str, identifiant: str | None) -> None:
    entry = parse_whitelist(SAMPLE).allows_host(host)
    assert (entry.identifiant if entry else None) == identifiant


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b'<ListeBlancheDRIM-M versionFormat="1.0.0"/>',
        b'<!DOCTYPE ListeBlancheDRIM-M SYSTEM "file:///etc/passwd">'
        b'<ListeBlancheDRIM-M versionFormat="1.0.0"/>',
        b'<!doctype x><ListeBlancheDRIM-M versionFormat="1.0.0"/>',
        b'<ListeBlancheDRIM-M versionFormat="1.0.0"><!-- <!ENTITY x "y"> --></ListeBlancheDRIM-M>',
    ],
)
def test_dtd_and_entities_refused(data: bytes) -> None:
    with pytest.raises(WhitelistError, match=r"DOCTYPE|ENTITY"):
        parse_whitelist(data)


def test_dtd_refused_by_the_parser_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Second line of defence: even if the text scan missed it, expat handlers refuse.
    monkeypatch.setattr(wl, "_FORBIDDEN_MARKUP", re.compile(r"(?!)"))
    billion_laughs = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<ListeBlancheDRIM-M versionFormat="1.0.0">&b;</ListeBlancheDRIM-M>'
    )
    with pytest.raises(WhitelistError, match="DOCTYPE"):
        parse_whitelist(billion_laughs)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'<ListeBlanche versionFormat="1.0.0"/>', "root"),
        (SAMPLE.replace(b'versionFormat="1.0.0"', b'versionFormat="2.0.0"'), "versionFormat"),
        (SAMPLE.replace(b' versionFormat="1.0.0"', b""), "versionFormat"),
        (
            b'<ListeBlancheDRIM-M versionFormat="1.0.0"><ListeDomaines/></ListeBlancheDRIM-M>',
            "DateDeGeneration",
        ),
        (
            b'<ListeBlancheDRIM-M versionFormat="1.0.0"><DateDeGeneration>x'
            b"</DateDeGeneration></ListeBlancheDRIM-M>",
            "ListeDomaines",
        ),
        (b"<ListeBlancheDRIM-M", "well-formed"),
        (b"\xff\xfe<\x00a\x00", "UTF-8"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', "UTF-8"),
        (b'<?xml version="1.0" encoding="UTF-16"?><a/>', "encoding"),
    ],
)
def test_bad_structure_refused(data: bytes, match: str) -> None:
    with pytest.raises(WhitelistError, match=match):
        parse_whitelist(data)


def test_oversize_refused(tmp_path: Path) -> None:
    padding = b"<!--" + b" " * wl.MAX_WHITELIST_BYTES + b"-->"
    data = SAMPLE.replace(b"</ans:ListeBlancheDRIM-M>", padding + b"</ans:ListeBlancheDRIM-M>")
    with pytest.raises(WhitelistError, match="larger"):
        parse_whitelist(data)
    path = tmp_path / "big.xml"
    path.write_bytes(data)
    with pytest.raises(WhitelistError, match="larger"):
        load_whitelist(path)


def test_write_then_load_test_whitelist(tmp_path: Path) -> None:
    path = tmp_path / "liste-blanche.xml"
    write_test_whitelist(path, ["db1.localhost", "DB2.localhost", "localhost"])
    loaded = load_whitelist(path)
    assert [e.db for e in loaded.entries] == ["db1.localhost", "db2.localhost", "localhost"]
    assert loaded.entries[0].vi == "vi1.localhost"
    assert loaded.allows_host("db2.localhost") is not None
    assert loaded.allows_host("db3.localhost") is None
    assert all(e.identifiant and e.dn_certificat_operateur for e in loaded.entries)
    with pytest.raises(ValueError):
        write_test_whitelist(path, ["*.localhost"])


def test_unverified_signature_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    wl._warn_unverified_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger=wl.__name__):
        verify_signature(SAMPLE, trust=None)
        verify_signature(SAMPLE, trust=None)
    warnings = [r for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(warnings) == 1


SIGNED_SHAPE = b"""<ListeBlancheDRIM-M versionFormat="1.0.0"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
    xmlns:xades="http://uri.etsi.org/01903/v1.3.2#">
  <DateDeGeneration>2025-03-01</DateDeGeneration><ListeDomaines/>
  <ds:Signature Id="sig">
    <ds:SignedInfo>
      <ds:Reference URI=""><ds:Transforms>
        <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
      </ds:Transforms></ds:Reference>
      <ds:Reference URI="#props" Type="http://uri.etsi.org/01903#SignedProperties"/>
    </ds:SignedInfo>
    <ds:SignatureValue>AAAA</ds:SignatureValue>
    <ds:KeyInfo><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data>
    </ds:KeyInfo>
    <ds:Object><xades:QualifyingProperties Target="#sig">
      <xades:SignedProperties Id="props"/>
    </xades:QualifyingProperties></ds:Object>
  </ds:Signature>
</ListeBlancheDRIM-M>"""


def test_required_signature_fails_closed(pki: dict[str, TlsFiles], tmp_path: Path) -> None:
    trust = SignatureTrust.from_pem_file(pki["server"].ca_cert)
    unsigned = tmp_path / "unsigned.xml"
    write_test_whitelist(unsigned, ["db1.localhost"])
    with pytest.raises(WhitelistSignatureError, match="ds:Signature"):
        load_whitelist(unsigned, trust=trust)
    with pytest.raises(WhitelistSignatureError, match="SignedProperties"):
        verify_signature(SIGNED_SHAPE.replace(b"xades:SignedProperties", b"xades:X"), trust=trust)
    # Right shape, but the cryptographic check does not exist yet: never accept.
    with pytest.raises(WhitelistSignatureError, match="not implemented"):
        verify_signature(SIGNED_SHAPE, trust=trust)
    assert parse_whitelist(SIGNED_SHAPE).entries == ()
