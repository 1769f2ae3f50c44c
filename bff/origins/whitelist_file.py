"""Reading the ANS whitelist file: safe XML, the ANS XAdES signature, the entries
(issue 13 item 6; the model is :mod:`bff.origins.whitelist`).

:func:`load_whitelist` is the only way the application gets a whitelist, in every mode:

1. size cap, UTF-8/ASCII only, no DOCTYPE or ENTITY declaration (XXE, billion laughs),
   refused by a text scan up front, then by defusedxml parsing (:func:`_parse_safely`);
2. the enveloped XAdES signature verified by signxml (:func:`verify_whitelist`): the
   ``ds:Signature`` a child of the root, XML-DSig core validation (SignedInfo signature,
   every reference digest, no SHA-1), the XAdES SignedProperties and their
   SigningCertificate(V2) digest, against the ANS signing certificate(s) pinned in
   DRIMBOX_WHITELIST_SIGNER_CERT (:func:`load_signers`). No canonicalisation is written
   here. A list that is unsigned, tampered with, or signed by any other key is refused:
   the application does not start;
3. the entries are read from the signed content signxml returns (the document as
   signed, the signature removed, comments dropped), never from the raw input: nothing
   placed outside what the signature covers (signature wrapping) can be read.

Why pinned certificates rather than a CA: IGC-Santé issues certificates to every health
organisation, so "chains to IGC-Santé" would accept a list signed by any of them. Several
certificates may be pinned at once (the next ANS signing certificate before a rollover).

Entries: a malformed ``Domaine`` (missing/duplicated ``Identifiant``, ``db`` or
``DNCertificatOperateur``, ``db`` not a plain host name, wildcard, a DN that does not
parse) is dropped with a warning, so it can never match; a structural error (root,
version, missing ``DateDeGeneration``/``ListeDomaines``) rejects the whole file.

Not checked (documented residuals, docs/security.md): revocation of the ANS signing
certificate (it is pinned: replace it to revoke), and rollback to an older signed list
(``DateDeGeneration`` is not compared with the previous list's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from cryptography import x509
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from lxml import etree
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from bff.origins.whitelist import Whitelist, WhitelistEntry, normalize_host, parse_dn

log = logging.getLogger(__name__)

ROOT_TAG = "ListeBlancheDRIM-M"
VERSION_FORMAT = "1.0.0"
#: Far above a national list (a few hundred Domaine of ~600 bytes each).
MAX_WHITELIST_BYTES = 10 * 1024 * 1024
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

_FIELDS = {
    "Identifiant": "identifiant",
    "db": "db",
    "vi": "vi",
    "Denomination": "denomination",
    "DNCertificatOperateur": "dn_certificat_operateur",
    "SupportContact": "support_contact",
    "DateMAJ": "date_maj",
}
_REQUIRED = ("Identifiant", "db", "DNCertificatOperateur")
_FORBIDDEN_MARKUP = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECL_ENCODING = re.compile(r"""^<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ALLOWED_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii"}
#: The signature: a direct child of the root (enveloped), any number of references
#: (ANS's tool may or may not sign KeyInfo), the XAdES properties required by signxml.
_SIGNATURE_CONFIG = XAdESSignatureConfiguration(location="./", expect_references=True)


class WhitelistError(ValueError):
    """The whitelist file is unusable (unsafe, malformed, wrong version, bad signature)."""


class WhitelistSignatureError(WhitelistError):
    """The signature is missing, malformed or could not be verified."""


# --- safe XML -------------------------------------------------------------------------


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


def _parse_safely(data: bytes) -> ET.Element:
    """defusedxml: DTDs, entity declarations and external references are refused."""
    _check_text(data)
    try:
        root: ET.Element = DefusedET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise WhitelistError(f"DOCTYPE/ENTITY or external reference refused: {exc!r}") from exc
    except ET.ParseError as exc:
        raise WhitelistError(f"whitelist is not well-formed XML: {exc}") from exc
    return root


# --- the signature ------------------------------------------------------------------------


def load_signers(path: Path) -> tuple[x509.Certificate, ...]:
    """The pinned ANS signing certificate(s) of DRIMBOX_WHITELIST_SIGNER_CERT (PEM)."""
    try:
        signers = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except ValueError as exc:
        raise WhitelistSignatureError(f"{path}: not a PEM certificate file") from exc
    return signers


def _hardened_parser() -> Any:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def verify_whitelist(data: bytes, signers: Sequence[x509.Certificate]) -> Any:
    """Verify the ANS XAdES signature of ``data`` with one of the pinned ``signers``;
    return the signed ``ListeBlancheDRIM-M`` element (lxml) as signxml rebuilt it from
    the signed bytes. Raises :class:`WhitelistError` (unsafe or malformed XML) or
    :class:`WhitelistSignatureError` (unsigned, tampered, another signer)."""
    _parse_safely(data)
    if not signers:
        raise WhitelistSignatureError("no ANS signing certificate to verify the whitelist with")
    failure: Exception | None = None
    for signer in signers:
        try:
            results = XAdESVerifier().verify(
                data, x509_cert=signer, parser=_hardened_parser(), expect_config=_SIGNATURE_CONFIG
            )
        # Whatever signxml, lxml or cryptography raise on hostile input, the list is not
        # verified: fail closed, one error type for the caller.
        except Exception as exc:
            failure = exc
            continue
        return _signed_list(results)
    raise WhitelistSignatureError(
        f"whitelist signature not verified with the pinned certificate(s): {failure!r}"
    ) from failure


def _signed_list(results: Iterable[Any]) -> Any:
    """The content covered by the whole-document reference (``URI=""``, enveloped)."""
    results = list(results)
    references = results[0].signature_xml.findall(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference")
    found = [
        result.signed_xml
        for reference, result in zip(references, results, strict=True)
        if reference.get("URI") == "" and result.signed_xml is not None
    ]
    if len(found) != 1 or _local(found[0].tag) != ROOT_TAG:
        raise WhitelistSignatureError(
            "the signature does not cover the whole ListeBlancheDRIM-M document"
        )
    return found[0]


# --- the entries --------------------------------------------------------------------------


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: Any, local_name: str) -> list[Any]:
    # lxml yields comments and processing instructions too: their tag is not a string.
    return [child for child in element if _local(child.tag) == local_name]


def _text(element: Any) -> str:
    return "".join(element.itertext()).strip()


def _single(parent: Any, local_name: str) -> Any:
    found = _children(parent, local_name)
    if len(found) != 1:
        raise WhitelistError(f"expected exactly one <{local_name}>, found {len(found)}")
    return found[0]


def _entry(domaine: Any, position: int) -> WhitelistEntry | None:
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
    operator_dn = parse_dn(values["dn_certificat_operateur"])
    if db is None or operator_dn is None:
        log.warning(
            "whitelist Domaine #%d (%s): %s, entry dropped",
            position,
            values["identifiant"],
            f"<db> {values['db']!r} is not a host name"
            if db is None
            else "<DNCertificatOperateur> is not a DN",
        )
        return None
    values["db"] = db
    return WhitelistEntry(**values, operator_dn=operator_dn)


def whitelist_from(root: Any) -> Whitelist:
    """The entries of a parsed ``ListeBlancheDRIM-M`` element (ElementTree or lxml)."""
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


def parse_whitelist(data: bytes) -> Whitelist:
    """Parse WITHOUT verifying the signature (tests and tools; the application only uses
    :func:`read_whitelist` / :func:`load_whitelist`)."""
    return whitelist_from(_parse_safely(data))


def read_whitelist(data: bytes, signers: Sequence[x509.Certificate]) -> Whitelist:
    """Verify, then parse the signed content only."""
    return whitelist_from(verify_whitelist(data, signers))


def load_whitelist(path: Path, signer_cert: Path) -> Whitelist:
    """Read ``path`` (size-capped), verify its signature with the certificate(s) of
    ``signer_cert``, parse what is signed."""
    with path.open("rb") as handle:
        data = handle.read(MAX_WHITELIST_BYTES + 1)
    if len(data) > MAX_WHITELIST_BYTES:
        raise WhitelistError(f"{path}: larger than {MAX_WHITELIST_BYTES} bytes")
    whitelist = read_whitelist(data, load_signers(signer_cert))
    log.info(
        "ANS whitelist of %s verified: %d entries", whitelist.generated_at, len(whitelist.entries)
    )
    return whitelist
