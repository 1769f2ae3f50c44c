"""The ANS whitelist of Source DRIMboxes (liste blanche DRIM-M, FACTS.md 1; spec E203).

A Consumer DRIMbox may only retrieve images (WADO-RS ``GET {RetrieveURL}``, mutual TLS with
IGC-Santé certificates) from a Source DRIMbox listed here. The file, published and signed
by ANS (enveloped XAdES), looks like::

    <ListeBlancheDRIM-M versionFormat="1.0.0">
      <DateDeGeneration>2024-05-02T10:00:00</DateDeGeneration>
      <ListeDomaines>
        <Domaine>
          <Identifiant>...</Identifiant>
          <db>db1.111.mesimagesmedicales.fr</db>
          <vi>vi1.111.mesimagesmedicales.fr</vi>
          <Denomination>...</Denomination>
          <DNCertificatOperateur>CN=...,O=...,C=FR</DNCertificatOperateur>
          <SupportContact>...</SupportContact>
          <DateMAJ>...</DateMAJ>
        </Domaine>
      </ListeDomaines>
      <ds:Signature>...</ds:Signature>
    </ListeBlancheDRIM-M>

Host matching (:meth:`Whitelist.allows_host`) uses ``db`` only: the Consumer talks to the
Source *DRIMbox* (the host of the KOS RetrieveURL), never to its viewer; ``vi`` is the
Source's patient/professional viewer location and plays no part in Consumer -> Source
retrieval, so a ``vi`` name must not open the image channel.

Parsing is defensive (the file comes from the network): size cap, UTF-8/ASCII only,
no DOCTYPE or ENTITY declaration (XXE, billion laughs), refused both by a text scan up
front and by the expat handlers. Element namespaces are tolerated (matched by local name).
A malformed ``Domaine`` (missing/duplicated ``Identifiant`` or ``db``, ``db`` not a plain
host name, wildcard) is dropped with a warning, so it can never match; a structural error
(root, version, missing ``DateDeGeneration``/``ListeDomaines``) rejects the whole file.

Not done here (later steps): the XAdES signature check (see :func:`verify_signature`),
and checking that the certificate presented by the Source in the TLS handshake matches the
entry's ``DNCertificatOperateur``.
"""

from __future__ import annotations

import functools
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from cryptography import x509

log = logging.getLogger(__name__)

ROOT_TAG = "ListeBlancheDRIM-M"
VERSION_FORMAT = "1.0.0"
#: Far above a national list (a few hundred Domaine of ~600 bytes each).
MAX_WHITELIST_BYTES = 10 * 1024 * 1024
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
ENVELOPED_TRANSFORM = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

_FIELDS = {
    "Identifiant": "identifiant",
    "db": "db",
    "vi": "vi",
    "Denomination": "denomination",
    "DNCertificatOperateur": "dn_certificat_operateur",
    "SupportContact": "support_contact",
    "DateMAJ": "date_maj",
}
_REQUIRED = ("Identifiant", "db")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_FORBIDDEN_MARKUP = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECL_ENCODING = re.compile(r"""^<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ALLOWED_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii"}


class WhitelistError(ValueError):
    """The whitelist file is unusable (unsafe, malformed, wrong version, bad signature)."""


class WhitelistSignatureError(WhitelistError):
    """The signature is missing, malformed or could not be verified."""


@dataclass(frozen=True)
class WhitelistEntry:
    identifiant: str
    db: str  # normalized: lower case, no trailing dot
    vi: str
    denomination: str
    dn_certificat_operateur: str
    support_contact: str
    date_maj: str


@dataclass(frozen=True)
class Whitelist:
    generated_at: str
    entries: tuple[WhitelistEntry, ...]

    def allows_host(self, host: str) -> WhitelistEntry | None:
        """The entry whose ``db`` is exactly ``host`` (case-insensitive, one trailing dot
        ignored), else None. No wildcard, no suffix match, ``vi`` is not considered (see
        the module docstring). ``host`` is a bare host name: ``host:port``, an IP literal
        or a URL never match. None means: refuse the retrieval with E203."""
        wanted = normalize_host(host)
        if wanted is None:
            return None
        for entry in self.entries:
            if entry.db == wanted:
                return entry
        return None


def normalize_host(host: str) -> str | None:
    """Lower-case LDH host name without its trailing dot, or None if ``host`` is not one
    (wildcards, ports, spaces, non-ASCII and empty labels are refused)."""
    name = host.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():  # an IPv4 literal is not a DRIMbox name
        return None
    return name


# --- safe XML -------------------------------------------------------------------------


def _refuse(what: str) -> None:
    raise WhitelistError(f"{what} declarations are refused in the whitelist")


def _check_text(data: bytes) -> None:
    if len(data) > MAX_WHITELIST_BYTES:
        raise WhitelistError(f"whitelist larger than {MAX_WHITELIST_BYTES} bytes")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise WhitelistError("UTF-16/32 whitelists are not accepted (UTF-8 only)")
    body = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WhitelistError("whitelist is not valid UTF-8") from exc
    declared = _XML_DECL_ENCODING.match(text)
    if declared and declared.group(1).lower() not in _ALLOWED_ENCODINGS:
        raise WhitelistError(f"whitelist encoding {declared.group(1)!r} not accepted")
    if _FORBIDDEN_MARKUP.search(text):
        raise WhitelistError("DOCTYPE/ENTITY declarations are refused in the whitelist")


def _parse_xml(data: bytes) -> ET.Element:
    """Parse with expat directly so that DTD-related handlers refuse instead of expanding.
    Element and attribute names come out as ``{namespace}local`` like ElementTree's."""
    _check_text(data)
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")

    def qualify(name: str) -> str:
        return "{" + name if "}" in name else name

    def start(name: str, attrs: dict[str, str]) -> None:
        builder.start(qualify(name), {qualify(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        builder.end(qualify(name))

    def doctype(*_: object) -> None:
        _refuse("DOCTYPE")

    def entity(*_: object) -> None:
        _refuse("ENTITY")

    def external(*_: object) -> int:
        _refuse("external entity")
        return 0

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise WhitelistError(f"whitelist is not well-formed XML: {exc}") from exc
    return builder.close()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, local_name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == local_name]


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _single(parent: ET.Element, local_name: str) -> ET.Element:
    found = _children(parent, local_name)
    if len(found) != 1:
        raise WhitelistError(f"expected exactly one <{local_name}>, found {len(found)}")
    return found[0]


# --- parsing --------------------------------------------------------------------------


def _entry(domaine: ET.Element, position: int) -> WhitelistEntry | None:
    values: dict[str, str] = {}
    for xml_name, attribute in _FIELDS.items():
        found = _children(domaine, xml_name)
        if len(found) > 1:
            log.warning("whitelist Domaine #%d: repeated <%s>, entry dropped", position, xml_name)
            return None
        values[attribute] = _text(found[0]) if found else ""
    for xml_name in _REQUIRED:
        if not values[_FIELDS[xml_name]]:
            log.warning("whitelist Domaine #%d: no <%s>, entry dropped", position, xml_name)
            return None
    db = normalize_host(values["db"])
    if db is None:
        log.warning(
            "whitelist Domaine #%d (%s): <db> %r is not a host name, entry dropped",
            position,
            values["identifiant"],
            values["db"],
        )
        return None
    values["db"] = db
    return WhitelistEntry(**values)


def parse_whitelist(data: bytes) -> Whitelist:
    """Parse (but do not authenticate: see :func:`verify_signature`) an ANS whitelist."""
    root = _parse_xml(data)
    if _local(root.tag) != ROOT_TAG:
        raise WhitelistError(f"root element is <{_local(root.tag)}>, expected <{ROOT_TAG}>")
    version = root.get("versionFormat")
    if version != VERSION_FORMAT:
        raise WhitelistError(f"versionFormat {version!r} not supported ({VERSION_FORMAT})")
    generated_at = _text(_single(root, "DateDeGeneration"))
    if not generated_at:
        raise WhitelistError("empty <DateDeGeneration>")
    domaines = _children(_single(root, "ListeDomaines"), "Domaine")
    entries: list[WhitelistEntry] = []
    seen: set[str] = set()
    for position, domaine in enumerate(domaines, start=1):
        entry = _entry(domaine, position)
        if entry is None:
            continue
        if entry.db in seen:
            log.warning("whitelist: %s listed twice, first entry kept", entry.db)
            continue
        seen.add(entry.db)
        entries.append(entry)
    return Whitelist(generated_at=generated_at, entries=tuple(entries))


# --- signature ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureTrust:
    """What an ANS whitelist signature must chain to.

    ``anchors``: the CA certificates the ANS signing certificate must chain to (IGC-Santé
    roots/intermediates as published by ANS). ``signer_subject``: optionally, the RFC 4514
    DN the signing certificate must carry (pins the ANS signing identity).
    """

    anchors: tuple[x509.Certificate, ...]
    signer_subject: str | None = None

    @classmethod
    def from_pem_file(cls, path: Path, *, signer_subject: str | None = None) -> SignatureTrust:
        anchors = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
        if not anchors:
            raise ValueError(f"{path}: no certificate")
        return cls(anchors=anchors, signer_subject=signer_subject)


@functools.cache
def _warn_unverified_once() -> None:
    # functools.cache makes this log once per process (tests may cache_clear()).
    log.warning(
        "ANS whitelist signature NOT verified: XAdES verification is not implemented yet; "
        "the whitelist file is trusted as deployed"
    )


def _check_signature_structure(root: ET.Element) -> None:
    """The enveloped XAdES shape: one ds:Signature child of the root, whose single
    Reference (URI="") uses the enveloped-signature transform, with a signing certificate
    in KeyInfo and XAdES QualifyingProperties/SignedProperties in ds:Object."""
    signatures = [child for child in root if child.tag == f"{{{DSIG_NS}}}Signature"]
    if len(signatures) != 1:
        raise WhitelistSignatureError(
            f"expected one enveloped ds:Signature under the root, found {len(signatures)}"
        )
    signature = signatures[0]
    ds = {"ds": DSIG_NS, "xades": XADES_NS}
    references = signature.findall("ds:SignedInfo/ds:Reference", ds)
    whole_document = [ref for ref in references if ref.get("URI") == ""]
    if len(whole_document) != 1:
        raise WhitelistSignatureError('no single ds:Reference URI="" (whole document)')
    transforms = {
        t.get("Algorithm") for t in whole_document[0].findall("ds:Transforms/ds:Transform", ds)
    }
    if ENVELOPED_TRANSFORM not in transforms:
        raise WhitelistSignatureError("the document reference lacks the enveloped transform")
    if signature.find("ds:SignatureValue", ds) is None:
        raise WhitelistSignatureError("no ds:SignatureValue")
    if signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", ds) is None:
        raise WhitelistSignatureError("no signing certificate in ds:KeyInfo")
    if signature.find("ds:Object/xades:QualifyingProperties/xades:SignedProperties", ds) is None:
        raise WhitelistSignatureError("no XAdES SignedProperties (not a XAdES signature)")


def verify_signature(data: bytes, *, trust: SignatureTrust | None) -> None:
    """THE place where the ANS XAdES enveloped signature of the whitelist is checked.

    ``trust=None`` means "not verified yet": nothing is checked and a warning is logged
    once per process. This is the current deployment mode, where the whitelist file is
    provisioned by the operator out of band.

    With a ``trust``, the signature's shape is checked (:func:`_check_signature_structure`)
    and then the function FAILS CLOSED with :class:`WhitelistSignatureError`, because the
    cryptographic part is not implemented. What remains to do there:

    1. XML-DSig core validation: canonicalize ``ds:SignedInfo`` with its
       CanonicalizationMethod (C14N 1.0 / exclusive C14N), verify ``ds:SignatureValue``
       with the KeyInfo certificate's key and SignatureMethod (RSA-SHA256 expected; refuse
       SHA-1); for each ``ds:Reference`` recompute the digest: ``URI=""`` = the whole
       document minus the ds:Signature (enveloped transform) then C14N; and the reference
       to ``xades:SignedProperties`` (``Type=".../v1.3.2#SignedProperties"``, by Id).
       Every reference must be covered; refuse extra/unknown references, XPath/XSLT
       transforms and external URIs (signature wrapping: the verified root must be the
       root that is then parsed, hence verify and parse the same bytes).
    2. XAdES-BES checks: ``SigningCertificate(V2)`` digest equals the KeyInfo certificate,
       ``SigningTime`` present and plausible (not in the future; not older than the
       previous accepted list: anti-rollback together with ``DateDeGeneration``).
    3. Certificate: chain the signing certificate to ``trust.anchors`` (IGC-Santé, via
       ``cryptography.x509.verification`` or OpenSSL), digitalSignature/nonRepudiation
       key usage, validity at SigningTime, revocation (CRL of the IGC-Santé CA), and
       ``trust.signer_subject`` when given.

    ``signxml`` (not installed) covers step 1 for plain XML-DSig (and could be used with
    a custom SignedProperties reference) but does not do XAdES-BES (step 2) nor IGC-Santé
    path validation (step 3); ``lxml`` would be needed for exact C14N of the namespace
    context (ElementTree's canonicalize() is C14N 2.0 only).
    """
    if trust is None:
        _warn_unverified_once()
        return
    _check_signature_structure(_parse_xml(data))
    raise WhitelistSignatureError(
        "XAdES signature verification is not implemented: refusing a whitelist that "
        "was required to be verified"
    )


# --- files ----------------------------------------------------------------------------


def load_whitelist(path: Path, *, trust: SignatureTrust | None = None) -> Whitelist:
    """Read (size-capped), verify the signature (see :func:`verify_signature`), parse."""
    with path.open("rb") as handle:
        data = handle.read(MAX_WHITELIST_BYTES + 1)
    if len(data) > MAX_WHITELIST_BYTES:
        raise WhitelistError(f"{path}: larger than {MAX_WHITELIST_BYTES} bytes")
    verify_signature(data, trust=trust)
    return parse_whitelist(data)


def _viewer_name(db: str) -> str:
    first, _, rest = db.partition(".")
    first = "vi" + first[2:] if first.startswith("db") else "vi-" + first
    return f"{first}.{rest}" if rest else first


def write_test_whitelist(path: Path, hosts: Sequence[str]) -> None:
    """Write an UNSIGNED whitelist in the ANS layout, one Domaine per host (demo/tests).

    ``vi`` is derived from ``db`` (``db1.x`` -> ``vi1.x``). A comment marks it unsigned.
    """
    root = ET.Element(ROOT_TAG, {"versionFormat": VERSION_FORMAT})
    ET.SubElement(root, "DateDeGeneration").text = "2025-01-15T09:30:00+01:00"
    domaines = ET.SubElement(root, "ListeDomaines")
    for index, host in enumerate(hosts, start=1):
        db = normalize_host(host)
        if db is None:
            raise ValueError(f"not a host name: {host!r}")
        domaine = ET.SubElement(domaines, "Domaine")
        values = {
            "Identifiant": f"DRIMBOX-TEST-{index:03d}",
            "db": db,
            "vi": _viewer_name(db),
            "Denomination": f"DRIMbox de test n°{index}",
            "DNCertificatOperateur": f"CN={db},O=DRIMbox viewer tests,C=FR",
            "SupportContact": "support-drimbox@example.invalid",
            "DateMAJ": "2025-01-15",
        }
        for name, value in values.items():
            ET.SubElement(domaine, name).text = value
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!-- Liste blanche de TEST, NON SIGNÉE : ne pas utiliser en production. -->\n"
        f"{body}\n",
        encoding="utf-8",
    )
