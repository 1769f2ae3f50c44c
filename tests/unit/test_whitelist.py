"""The ANS whitelist (spec E203, FACTS 1; issue 13 item 6): safe parsing, the XAdES
signature (a list signed at test time with a throw-away key), Source addresses matched
on scheme, host and port, operator certificate DNs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from bff.app import create_app
from bff.demo.pki import TlsFiles, make_whitelist_signer, subject
from bff.demo.whitelist import sign_whitelist, whitelist_xml, write_test_whitelist
from bff.origins import whitelist_file as wf
from bff.origins.whitelist import NotWhitelisted, Whitelist, dn_matches, parse_dn
from bff.origins.whitelist_file import (
    WhitelistError,
    WhitelistSignatureError,
    load_signers,
    load_whitelist,
    parse_whitelist,
    read_whitelist,
)
from bff.settings import Settings

DSIG = "{http://www.w3.org/2000/09/xmldsig#}"

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
      <ans:DNCertificatOperateur>CN=x</ans:DNCertificatOperateur>
    </ans:Domaine>
    <ans:Domaine>
      <ans:Identifiant>NO-DB</ans:Identifiant>
      <ans:vi>vi9.example.fr</ans:vi>
      <ans:DNCertificatOperateur>CN=x</ans:DNCertificatOperateur>
    </ans:Domaine>
    <ans:Domaine>
      <ans:Identifiant>NO-DN</ans:Identifiant>
      <ans:db>db2.localhost</ans:db>
    </ans:Domaine>
    <ans:Domaine>
      <ans:Identifiant>BAD-DN</ans:Identifiant>
      <ans:db>db3.localhost</ans:db>
      <ans:DNCertificatOperateur>not a DN</ans:DNCertificatOperateur>
    </ans:Domaine>
  </ans:ListeDomaines>
  <ds:Signature><ds:SignedInfo/></ds:Signature>
</ans:ListeBlancheDRIM-M>
"""


# --- parsing (the signature apart) ------------------------------------------------------


def test_parse_realistic_sample_with_namespaces() -> None:
    parsed = parse_whitelist(SAMPLE)
    assert parsed.generated_at == "2025-03-01T08:00:00+01:00"
    # The wildcard entry, the entries without <db> or without a usable operator DN are
    # dropped: they can never match.
    assert [e.identifiant for e in parsed.entries] == ["DRIMBOX-111-01", "DRIMBOX-222-01"]
    first = parsed.entries[0]
    assert first.db == "db1.111.mesimagesmedicales.fr"
    assert first.vi == "vi1.111.mesimagesmedicales.fr"
    assert first.denomination == "Centre de radiologie Ambroise"
    assert first.dn_certificat_operateur == "CN=db1.111.mesimagesmedicales.fr,O=CRA,C=FR"
    assert first.operator_dn == subject("db1.111.mesimagesmedicales.fr", "CRA")
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
        ("db2.localhost", None),  # no operator DN: dropped
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
    with pytest.raises(WhitelistError, match=r"DOCTYPE|ENTITY"):
        read_whitelist(data, [])


def test_dtd_refused_by_the_parser_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Second line of defence: even if the text scan missed it, defusedxml refuses.
    monkeypatch.setattr(wf, "_FORBIDDEN_MARKUP", re.compile(r"(?!)"))
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


def test_oversize_refused(tmp_path: Path, signer: TlsFiles) -> None:
    padding = b"<!--" + b" " * wf.MAX_WHITELIST_BYTES + b"-->"
    data = SAMPLE.replace(b"</ans:ListeBlancheDRIM-M>", padding + b"</ans:ListeBlancheDRIM-M>")
    with pytest.raises(WhitelistError, match="larger"):
        parse_whitelist(data)
    path = tmp_path / "big.xml"
    path.write_bytes(data)
    with pytest.raises(WhitelistError, match="larger"):
        load_whitelist(path, signer.cert)


# --- the signature ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_whitelist_signer(tmp_path_factory.mktemp("signer"))


@pytest.fixture(scope="module")
def other_signer(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_whitelist_signer(tmp_path_factory.mktemp("other"), "Pas ANS")


def pinned(*files: TlsFiles) -> list[x509.Certificate]:
    return [cert for f in files for cert in load_signers(f.cert)]


HOSTS = ["db1.localhost", "DB2.localhost", "localhost"]


@pytest.fixture(scope="module")
def signed(signer: TlsFiles) -> bytes:
    return sign_whitelist(whitelist_xml(HOSTS), signer)


def test_write_then_load_a_signed_test_whitelist(tmp_path: Path, signer: TlsFiles) -> None:
    path = tmp_path / "liste-blanche.xml"
    write_test_whitelist(path, HOSTS, signer)
    loaded = load_whitelist(path, signer.cert)
    assert [e.db for e in loaded.entries] == ["db1.localhost", "db2.localhost", "localhost"]
    assert loaded.entries[0].vi == "vi1.localhost"
    assert loaded.entries[0].operator_dn == subject("db1.localhost")
    assert loaded.allows_host("db2.localhost") is not None
    assert loaded.allows_host("db3.localhost") is None
    assert all(e.identifiant and e.dn_certificat_operateur for e in loaded.entries)
    with pytest.raises(ValueError):
        write_test_whitelist(path, ["*.localhost"], signer)


def test_unsigned_list_is_refused(signer: TlsFiles) -> None:
    with pytest.raises(WhitelistSignatureError):
        read_whitelist(whitelist_xml(HOSTS), pinned(signer))
    with pytest.raises(WhitelistSignatureError, match="no ANS signing certificate"):
        read_whitelist(whitelist_xml(HOSTS), [])
    # The old placeholder's "right shape, no cryptography" is no signature either.
    with pytest.raises(WhitelistSignatureError):
        read_whitelist(SAMPLE, pinned(signer))


def test_list_signed_by_another_key_is_refused(
    signed: bytes, signer: TlsFiles, other_signer: TlsFiles
) -> None:
    assert read_whitelist(signed, pinned(signer)).allows_host("localhost") is not None
    with pytest.raises(WhitelistSignatureError):
        read_whitelist(signed, pinned(other_signer))
    by_other = sign_whitelist(whitelist_xml(HOSTS), other_signer)
    with pytest.raises(WhitelistSignatureError):
        read_whitelist(by_other, pinned(signer))


def test_several_pinned_certificates_for_a_rollover(
    signed: bytes, signer: TlsFiles, other_signer: TlsFiles
) -> None:
    by_other = sign_whitelist(whitelist_xml(HOSTS), other_signer)
    both = pinned(other_signer, signer)
    assert len(read_whitelist(signed, both).entries) == 3
    assert len(read_whitelist(by_other, both).entries) == 3


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"<db>localhost</db>", b"<db>evil.localhost</db>"),  # db changed after signing
        (b"CN=localhost,", b"CN=evil.localhost,"),  # the operator DN
        (b"<DateDeGeneration>2025", b"<DateDeGeneration>2026"),
        (
            b"</ListeDomaines>",
            b"<Domaine><Identifiant>X</Identifiant><db>evil.localhost</db>"
            b"<DNCertificatOperateur>CN=evil</DNCertificatOperateur></Domaine></ListeDomaines>",
        ),
        (b":SigningTime>20", b":SigningTime>19"),  # the XAdES signed properties
    ],
)
def test_tampered_list_is_refused(
    signed: bytes, signer: TlsFiles, before: bytes, after: bytes
) -> None:
    data = signed.replace(before, after, 1)
    assert data != signed
    with pytest.raises(WhitelistSignatureError, match="not verified"):
        read_whitelist(data, pinned(signer))


def _tree(data: bytes) -> etree._Element:
    return etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False))


def test_content_outside_the_signed_document_is_never_read(signed: bytes, signer: TlsFiles) -> None:
    """Signature wrapping: an evil entry hidden where the enveloped signature's digest does
    not look (inside ds:Signature, removed by the enveloped transform). The signature still
    verifies; only what it covers is read."""
    root = _tree(signed)
    signature = root.find(f"{DSIG}Signature")
    hidden = etree.SubElement(signature, f"{DSIG}Object")
    wrapped = etree.SubElement(hidden, "ListeDomaines")
    domaine = etree.SubElement(wrapped, "Domaine")
    for name, value in (
        ("Identifiant", "EVIL"),
        ("db", "evil.localhost"),
        ("DNCertificatOperateur", "CN=evil.localhost"),
    ):
        etree.SubElement(domaine, name).text = value
    data = etree.tostring(root)
    verified = read_whitelist(data, pinned(signer))
    assert verified.allows_host("evil.localhost") is None
    assert [e.db for e in verified.entries] == ["db1.localhost", "db2.localhost", "localhost"]


def test_signature_must_be_a_child_of_the_root(signed: bytes, signer: TlsFiles) -> None:
    root = _tree(signed)
    signature = root.find(f"{DSIG}Signature")
    root.remove(signature)
    root.find("ListeDomaines").append(signature)
    with pytest.raises(WhitelistSignatureError):
        read_whitelist(etree.tostring(root), pinned(signer))


def test_signature_must_cover_the_whole_document(signer: TlsFiles) -> None:
    """A genuine signature over a part of the document only (a reference to an element
    by Id) does not make the rest of the list trusted."""
    from signxml.algorithms import SignatureMethod
    from signxml.xades.xades import XAdESSigner

    root = _tree(whitelist_xml(HOSTS))
    root.find("ListeDomaines").set("Id", "domaines")
    partial = XAdESSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256).sign(
        root,
        key=signer.key.read_bytes(),
        cert=[signer.cert.read_text()],
        reference_uri="#domaines",
    )
    with pytest.raises(WhitelistSignatureError, match="whole"):
        read_whitelist(etree.tostring(partial), pinned(signer))


def test_signer_file_must_hold_certificates(tmp_path: Path) -> None:
    path = tmp_path / "signer.pem"
    path.write_text("not a certificate")
    with pytest.raises(WhitelistSignatureError, match="PEM"):
        load_signers(path)


# --- Source addresses (issue 13 item 6) -----------------------------------------------------

PORTS = frozenset({443, 8443})
STUDY_PATH = "/api/source/studies/1.2.3/series/4.5.6"


@pytest.fixture(scope="module")
def listed() -> Whitelist:
    return parse_whitelist(whitelist_xml(["db1.localhost", "localhost"]))


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        (f"https://db1.localhost{STUDY_PATH}", "https://db1.localhost"),
        (f"https://db1.localhost:443{STUDY_PATH}", "https://db1.localhost"),
        (f"HTTPS://DB1.Localhost:8443{STUDY_PATH}", "https://db1.localhost:8443"),
        (f"https://db1.localhost.:8443{STUDY_PATH}", "https://db1.localhost:8443"),
    ],
)
def test_source_address_rebuilt_from_checked_parts(
    listed: Whitelist, url: str, origin: str
) -> None:
    address, path = listed.source_for(url, PORTS)
    assert address.origin == origin and path == STUDY_PATH
    assert address.entry.db in {"db1.localhost"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://db1.localhost{STUDY_PATH}", "scheme"),
        (f"ftp://db1.localhost{STUDY_PATH}", "scheme"),
        (f"//db1.localhost{STUDY_PATH}", "scheme"),
        (f"https://db1.localhost:9443{STUDY_PATH}", "port 9443"),
        (f"https://db1.localhost:0{STUDY_PATH}", "port"),
        (f"https://db1.localhost:99999{STUDY_PATH}", "port"),
        (f"https://db1.localhost:x{STUDY_PATH}", "port"),
        (f"https://user@db1.localhost{STUDY_PATH}", "user info"),
        (f"https://user:pw@db1.localhost{STUDY_PATH}", "user info"),
        (f"https://db1.localhost@evil.example{STUDY_PATH}", "user info"),
        (f"https://evil.example#@db1.localhost{STUDY_PATH}", "fragment"),
        (f"https://db1.localhost{STUDY_PATH}?x=1", "query"),
        (f"https://db1.localhost{STUDY_PATH}?", "query"),
        (f"https://db1.localhost{STUDY_PATH}#frag", "fragment"),
        (f"https://evil.example\\@db1.localhost{STUDY_PATH}", "ASCII"),
        (f"https://db1.localhost {STUDY_PATH}", "ASCII"),
        (f"https://db1.localhost\t{STUDY_PATH}", "ASCII"),
        (f"https://dé1.localhost{STUDY_PATH}", "ASCII"),
        (f"https://vi1.localhost{STUDY_PATH}", "not in the ANS whitelist"),
        (f"https://db1.localhost.evil{STUDY_PATH}", "not in the ANS whitelist"),
        (f"https://127.0.0.1{STUDY_PATH}", "not in the ANS whitelist"),
        (f"https://[::1]{STUDY_PATH}", "not in the ANS whitelist"),
        ("https://db1.localhost/api/source/../admin/studies/1/series/2", "path"),
        ("https://db1.localhost/api/./source/studies/1/series/2", "path"),
        ("https://db1.localhost", "path"),
    ],
)
def test_source_address_refusals(listed: Whitelist, url: str, reason: str) -> None:
    with pytest.raises(NotWhitelisted, match=reason):
        listed.source_for(url, PORTS)


def test_only_443_by_default(listed: Whitelist) -> None:
    assert listed.source_for(f"https://localhost{STUDY_PATH}", frozenset({443}))
    with pytest.raises(NotWhitelisted, match="port 8443"):
        listed.source_for(f"https://localhost:8443{STUDY_PATH}", frozenset({443}))


# --- operator certificate DNs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "matches"),
    [
        ("CN=db1.localhost,O=DRIMbox viewer tests,C=FR", True),
        ("C=FR,O=DRIMbox viewer tests,CN=db1.localhost", True),  # OpenSSL's order
        ("cn=DB1.localhost, o=DRIMbox  Viewer tests, c=fr", True),  # case, spaces
        ("CN=db1.localhost,O=DRIMbox viewer tests", False),  # an attribute missing
        ("CN=db1.localhost,OU=x,O=DRIMbox viewer tests,C=FR", False),  # one more
        ("CN=db2.localhost,O=DRIMbox viewer tests,C=FR", False),
        ("O=DRIMbox viewer tests,CN=db1.localhost,C=FR", False),  # another order
        ("CN=db1.localhost+O=DRIMbox viewer tests,C=FR", False),  # multi-valued RDN
        ("CN=db1.localhost\\,O=DRIMbox viewer tests,C=FR", False),  # escaped comma
    ],
)
def test_operator_dn_matching(listed: str, matches: bool) -> None:
    name = parse_dn(listed)
    assert name is not None
    assert dn_matches(name, subject("db1.localhost")) is matches


@pytest.mark.parametrize("text", ["", "not a DN", "CN=", "XYZ=1", "CN=a,,O=b"])
def test_unparsable_dns(text: str) -> None:
    assert parse_dn(text) is None


def test_dn_attribute_spellings() -> None:
    name = parse_dn("serialNumber=123,emailAddress=a@b.fr,organizationIdentifier=X,CN=a,C=FR")
    assert name is not None and len(name) == 5
    assert parse_dn("SERIALNUMBER=123,cn=a") == parse_dn("serialnumber=123,CN=a")


def test_entry_for_peer(listed: Whitelist) -> None:
    entry = listed.entry_for_peer(subject("localhost"))
    assert entry is not None and entry.db == "localhost"
    assert listed.entry_for_peer(subject("localhost", "Imposteur")) is None
    assert listed.entry_for_peer(x509.Name([])) is None


# -- at start -------------------------------------------------------------------------------


def _start(settings: Settings) -> None:
    app = create_app(settings)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(run())


@pytest.mark.parametrize("mode", ["demo", "production"])
def test_an_unsigned_or_foreign_list_stops_the_start(
    tmp_path: Path, signer: TlsFiles, other_signer: TlsFiles, mode: str
) -> None:
    """The same path in every mode: the list is verified in the lifespan, before anything
    else is built; an unsigned list, or one signed by another key, and the BFF does not
    start."""
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_bytes(whitelist_xml(HOSTS))
    foreign = tmp_path / "foreign.xml"
    write_test_whitelist(foreign, HOSTS, other_signer)
    values: dict[str, object] = {
        "mode": mode,
        "consumer_enabled": True,
        "whitelist_signer_cert": str(signer.cert),
        "audit_log": tmp_path / "audit.jsonl",
        "archive_url": f"sqlite:///{tmp_path / 'archive.db'}",
        "frame_disk_cache_dir": str(tmp_path / "frames"),
        "prepared_dir": str(tmp_path / "prepared"),
    }
    if mode == "production":
        values.update(
            session_secret="s" * 40,
            psc_issuer="https://psc.example.fr",
            fcp_issuer="https://fcp.example.fr",
            trusted_hosts="db1.example.fr",
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
            state_key_file=str(tmp_path / "state.key"),
            audit_url=f"sqlite:///{tmp_path / 'state.db'}",
            audit_key_file=str(tmp_path / "audit.key"),
        )
    for path in (unsigned, foreign):
        settings = Settings.from_env({}, whitelist_file=str(path), **values)
        with pytest.raises(WhitelistSignatureError):
            _start(settings)
