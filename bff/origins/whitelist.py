"""The ANS whitelist of DRIMboxes (liste blanche DRIM-M, FACTS.md 1; spec E203): what it
says and how a Source address or a peer certificate is matched against it.

A Consumer DRIMbox may only retrieve images (WADO-RS ``GET {RetrieveURL}``, mutual TLS with
IGC-Santé certificates) from a Source DRIMbox listed here; a Source only answers a
Consumer whose client certificate is an operator certificate listed here. The file,
published and signed by ANS (enveloped XAdES), is read and verified by
:mod:`bff.origins.whitelist_file`; this module is the model, over plain data::

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

Matching a Source (:meth:`Whitelist.source_for`, issue 13 item 6): the RetrieveURL of a
KOS must be ``https``, name exactly the ``db`` host of an entry (the Source *DRIMbox*, never
its viewer ``vi``: a ``vi`` name must not open the image channel), on an allowed port (443:
the format has no port; other ports only by DRIMBOX_SOURCE_PORTS, for tests and the demo),
and carry no user info, query or fragment. Anything else is refused before any connection
(E203), so neither the user's PSC token nor our client certificate goes anywhere else.

Matching a certificate (:func:`dn_matches`): the entry's ``DNCertificatOperateur`` is
compared with the subject of the certificate the peer presented in the TLS handshake, as
distinguished names (RFC 4514 parsed by ``cryptography``, attribute values compared
case- and space-insensitively as LDAP's distinguishedNameMatch does), never as raw text.
The DN may be written most-specific first (RFC 4514, ``CN=..,O=..,C=FR``) or in OpenSSL's
order (``C=FR,O=..,CN=..``): both name the same certificate subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

#: The port of a DRIMbox Source (the whitelist names hosts only).
HTTPS_PORT = 443

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: What a RetrieveURL path may hold (RFC 3986 pchar and '/', no backslash, no space).
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
#: Attribute type names a DNCertificatOperateur may use (RFC 4514 and common spellings).
_DN_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "givenName": NameOID.GIVEN_NAME,
    "title": NameOID.TITLE,
}
_DN_NAME_OVERRIDES = {
    spelling: oid
    for name, oid in _DN_ATTRIBUTES.items()
    for spelling in (name, name.upper(), name.lower())
}


class NotWhitelisted(Exception):
    """A Source address the whitelist does not cover (E203); ``str()`` says why, for the
    log and the audit trail only."""


@dataclass(frozen=True)
class WhitelistEntry:
    identifiant: str
    db: str  # normalized: lower case, no trailing dot
    vi: str
    denomination: str
    dn_certificat_operateur: str
    support_contact: str
    date_maj: str
    #: ``dn_certificat_operateur`` parsed (an entry whose DN does not parse is dropped).
    operator_dn: x509.Name = field(repr=False, compare=False)


@dataclass(frozen=True)
class SourceAddress:
    """Where a whitelisted Source is reached: scheme https, the entry's host, a port."""

    entry: WhitelistEntry
    port: int

    @property
    def origin(self) -> str:
        """``https://host`` (``:port`` unless 443), built from checked parts only."""
        port = "" if self.port == HTTPS_PORT else f":{self.port}"
        return f"https://{self.entry.db}{port}"


@dataclass(frozen=True)
class Whitelist:
    generated_at: str
    entries: tuple[WhitelistEntry, ...]

    def allows_host(self, host: str) -> WhitelistEntry | None:
        """The entry whose ``db`` is exactly ``host`` (case-insensitive, one trailing dot
        ignored), else None. No wildcard, no suffix match, ``vi`` is not considered.
        ``host`` is a bare host name: ``host:port``, an IP literal or a URL never match."""
        wanted = normalize_host(host)
        if wanted is None:
            return None
        for entry in self.entries:
            if entry.db == wanted:
                return entry
        return None

    def source_for(self, url: str, ports: frozenset[int]) -> tuple[SourceAddress, str]:
        """The whitelisted Source a RetrieveURL names, and the URL's path; raises
        :class:`NotWhitelisted` unless the URL is exactly ``https://<db>[:port]/path`` with
        ``db`` listed and ``port`` in ``ports`` (443 when absent). Callers build the URL
        they connect to from the result (:attr:`SourceAddress.origin` + path), never from
        ``url``: what was checked is what is used."""
        if not url.isascii() or not url.isprintable() or any(c in url for c in " \\"):
            raise NotWhitelisted("not a plain ASCII URL")
        if "?" in url or "#" in url:
            raise NotWhitelisted("a query or a fragment")
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            raise NotWhitelisted(f"scheme {parts.scheme!r} is not https")
        if "@" in parts.netloc:
            raise NotWhitelisted("user info in the authority")
        try:
            port = HTTPS_PORT if parts.port is None else parts.port
        except ValueError:
            raise NotWhitelisted("an invalid port") from None
        entry = self.allows_host(parts.hostname or "")
        if entry is None:
            raise NotWhitelisted(f"host {parts.hostname!r} is not in the ANS whitelist")
        if port not in ports:
            raise NotWhitelisted(f"port {port} of {entry.db} is not allowed")
        path = parts.path
        if not _PATH.fullmatch(path) or any(s in {".", ".."} for s in path.split("/")):
            raise NotWhitelisted("an unusual path")
        return SourceAddress(entry, port), path

    def entry_for_peer(self, subject: x509.Name) -> WhitelistEntry | None:
        """The entry whose operator certificate DN is ``subject``, else None."""
        for entry in self.entries:
            if dn_matches(entry.operator_dn, subject):
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


# --- distinguished names -----------------------------------------------------------------


def _without_separator_spaces(text: str) -> str:
    """``CN=a, O=b`` -> ``CN=a,O=b``: spaces around unescaped RDN separators, which
    RFC 1779/2253 writers (Java's X500Principal, OpenSSL's output) put there, go; an
    escaped space (``\\ ``) stays."""
    pieces: list[str] = []
    separators: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if not escaped and char in ",+":
            pieces.append("".join(current))
            separators.append(char)
            current = []
            continue
        current.append(char)
        escaped = not escaped and char == "\\"
    pieces.append("".join(current))

    def tidy(piece: str) -> str:
        piece = piece.lstrip(" ")
        while piece.endswith(" ") and not piece.endswith("\\ "):
            piece = piece[:-1]
        return piece

    out = tidy(pieces[0])
    for separator, piece in zip(separators, pieces[1:], strict=True):
        out += separator + tidy(piece)
    return out


def parse_dn(text: str) -> x509.Name | None:
    """An RFC 4514 DN as written in ``DNCertificatOperateur`` (spaces after separators
    tolerated); None if it does not parse or is empty."""
    try:
        name = x509.Name.from_rfc4514_string(
            _without_separator_spaces(text.strip()), _DN_NAME_OVERRIDES
        )
    except ValueError:
        return None
    return name if len(name) else None


def _fold(value: str | bytes) -> str | bytes:
    """LDAP caseIgnoreMatch, roughly (RFC 4518): case and runs of spaces do not count."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


def _rdns(name: x509.Name) -> list[frozenset[tuple[str, str | bytes]]]:
    return [frozenset((a.oid.dotted_string, _fold(a.value)) for a in rdn) for rdn in name.rdns]


def dn_matches(listed: x509.Name, presented: x509.Name) -> bool:
    """Whether a certificate subject ``presented`` is the DN ``listed`` (same attribute
    types and values, RDN by RDN, in the listed order or its reverse)."""
    want, have = _rdns(listed), _rdns(presented)
    return bool(want) and (have == want or have == want[::-1])
