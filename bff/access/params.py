"""The Source viewer link: ``/IHEInvokeImageDisplay?requestType=STUDY&studyUID=..``.

DB.VI-SO.07 and its Tableau 1 define four parameters, each required exactly once:

    requestType      must be ``STUDY``                                   else E410
    studyUID         a DICOM UID                                         else E411
    accessionNumber  an HL7 v2 CX with ``^`` written ``-``, ``&`` ``_``  else E412
    idCDA            the CDA ``id/@root``: an OID, no extension          else E413
    missing, repeated or too many parameters                             E414

Every failure raises :class:`bff.errors.InvalidLink` with its code. The exception's
``detail`` (log only) may quote the offending value, always through ``repr`` and cut
short, so control characters cannot forge log lines; the user-facing ``message`` is the
fixed French sentence of the error class and never carries input.

Choices, and why:

- Parameter names are compared case-insensitively, ASCII only (the CI-SIS CDA profile
  writes ``Accessionnumber``). A name with non-ASCII letters is never one of ours
  (``str.casefold`` would map e.g. the long s ``ſ`` to ``s``; we do not want that).
- Unknown parameters are ignored, names and values: IHE Invoke Image Display (RAD-106)
  lets the caller add optional ones (``viewerType``, ``diagnosticQuality``,
  ``keyImagesOnly``, ...) and a CDA link produced by some RIS may carry them. Rejecting
  them would break valid links; using them is not specified for DRIMbox. Their values
  never reach the result, the log detail or an error.
- ``requestType`` is compared exactly with ``STUDY``: IHE IID defines its values in upper
  case (``STUDY``, ``PATIENT``) and Tableau 1 says "La valeur doit être STUDY".
- Values are taken as given (the caller passes percent-decoded pairs, e.g. Starlette's
  ``query_params.multi_items()``): no trimming, a stray space or newline is an error.
- Each value longer than :data:`MAX_VALUE_LENGTH` is refused before any parsing, with the
  code of its parameter; more than :data:`MAX_PARAMETERS` pairs is E414.
- UIDs and OIDs are checked on their syntax only; whether they designate something we
  publish is checked later against the KOS archive (DB.VI-SO.33, DB.VI-SO.115).

The accession number (Tableau 1): ``543797436---_1.2.840.113619.6.197_ISO`` is the CX
``543797436^^^&1.2.840.113619.6.197&ISO``: ID, check digit (empty), check digit scheme
(empty), assigning authority = HD ``namespace&universal id&universal id type``. Splitting
on ``-`` only works because no component may contain ``-`` or ``_``: an ID written with a
``-`` is ambiguous and refused (E412). The ID is a DICOM Accession Number (SH, 16 chars);
we accept ASCII letters, digits and ``. / +`` only (see :data:`ACCESSION_ID_PATTERN`):
in particular no DICOM wildcard (``*``, ``?``), no backslash (value separator), no space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from bff.errors import InvalidLink

MAX_VALUE_LENGTH = 256
"""Longest accepted value of one of our parameters (the longest legal one is ~150)."""

MAX_PARAMETERS = 32
"""Most query pairs accepted in one link, ours and unknown ones together."""

UID_MAX_LENGTH = 64
"""DICOM PS3.5 section 9.1: a UID is at most 64 characters."""

OID_MAX_LENGTH = 64
"""Our cap for an ISO OID. ISO/IEC 8824 sets none; 64 is the DICOM UID limit and the XDS
``uniqueId`` limit (ITI TF-3), which idCDA becomes in the DMP (Tableau 1 note)."""

ACCESSION_ID_MAX_LENGTH = 16
"""DICOM Accession Number is SH: 16 characters."""

ACCESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9./+]{1,16}")
NAMESPACE_ID_PATTERN = re.compile(r"[A-Za-z0-9./+]{1,20}")  # HL7 v2 HD namespace: IS (20)
ISSUER_TYPE = "ISO"
REQUEST_TYPE_STUDY = "STUDY"

# Dot-separated arcs, each "0" or without leading zero. ASCII digits only ([0-9], not \d).
_ARCS = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")

# Our parameters: lower-case name -> (canonical name, code when its value is invalid).
_PARAMETERS: dict[str, tuple[str, str]] = {
    "requesttype": ("requestType", "E410"),
    "studyuid": ("studyUID", "E411"),
    "accessionnumber": ("accessionNumber", "E412"),
    "idcda": ("idCDA", "E413"),
}
_MISSING_OR_REPEATED = "E414"


def is_uid(value: str) -> bool:
    """A DICOM UID (PS3.5 9.1): at most 64 characters, ``<org root>.<suffix>`` so at least
    two components, each ``0`` or digits without a leading zero. The root arc is not
    restricted to 0/1/2 (legacy UIDs exist; the KOS archive check follows anyway)."""
    return len(value) <= UID_MAX_LENGTH and _ARCS.fullmatch(value) is not None


def is_oid(value: str) -> bool:
    """An ISO OID as we accept it: the UID component rules, at least two arcs, the first
    arc 0, 1 or 2, the second at most 39 under roots 0 and 1 (ISO/IEC 8824-1), and at most
    :data:`OID_MAX_LENGTH` characters."""
    if len(value) > OID_MAX_LENGTH or _ARCS.fullmatch(value) is None:
        return False
    first, second = value.split(".")[:2]
    if first not in ("0", "1", "2"):
        return False
    return first == "2" or int(second) <= 39


@dataclass(frozen=True)
class AccessionNumber:
    """An accession number and its issuer, as in the KOS (DB.VI-SO.33).

    ``namespace`` is the HD namespace ID of the assigning authority, empty in every
    DRIM-M sample; kept so that :meth:`to_url` gives back what was read.
    """

    id: str
    issuer: str  # universal id: an OID
    issuer_type: str = ISSUER_TYPE
    namespace: str = ""

    def to_url(self) -> str:
        """The Tableau 1 form, e.g. ``543797436---_1.2.840.113619.6.197_ISO``."""
        return f"{self.id}---{self.namespace}_{self.issuer}_{self.issuer_type}"


@dataclass(frozen=True)
class ViewerLink:
    """A validated viewer link (DB.VI-SO.07)."""

    study_uid: str
    accession: AccessionNumber
    cda_id: str

    def query(self) -> str:
        """The canonical query string, parameters in the order of Tableau 1."""
        pairs = (
            ("requestType", REQUEST_TYPE_STUDY),
            ("studyUID", self.study_uid),
            ("accessionNumber", self.accession.to_url()),
            ("idCDA", self.cda_id),
        )
        return "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs)


def _shown(value: str) -> str:
    """A value as it may appear in a log detail: repr-escaped and cut short."""
    return repr(value[:64]) + ("..." if len(value) > 64 else "")


def parse_accession(value: str) -> AccessionNumber:
    """Parse the URL form of the CX accession number; :class:`InvalidLink` E412 if bad."""

    def refuse(why: str) -> InvalidLink:
        return InvalidLink(f"accessionNumber {why}: {_shown(value)}", code="E412")

    if len(value) > MAX_VALUE_LENGTH:
        raise refuse("too long")
    components = value.split("-")
    if len(components) != 4:
        raise refuse(f"has {len(components)} CX components, expected 4")
    accession_id, check_digit, check_scheme, authority = components
    if not ACCESSION_ID_PATTERN.fullmatch(accession_id):
        raise refuse("ID is empty, longer than 16 or has characters outside [A-Za-z0-9./+]")
    if check_digit or check_scheme:
        raise refuse("has a check digit or scheme")
    parts = authority.split("_")
    if len(parts) != 3:
        raise refuse(f"assigning authority has {len(parts)} HD components, expected 3")
    namespace, issuer, issuer_type = parts
    if namespace and not NAMESPACE_ID_PATTERN.fullmatch(namespace):
        raise refuse("assigning authority namespace is invalid")
    if not is_oid(issuer):
        raise refuse("issuer is not an OID")
    if issuer_type != ISSUER_TYPE:
        raise refuse("issuer type is not ISO")
    return AccessionNumber(
        id=accession_id, issuer=issuer, issuer_type=issuer_type, namespace=namespace
    )


def parse_link(query: Sequence[tuple[str, str]]) -> ViewerLink:
    """Validate the query pairs of a viewer link; :class:`InvalidLink` with its code."""
    if len(query) > MAX_PARAMETERS:
        raise InvalidLink(f"{len(query)} query parameters", code=_MISSING_OR_REPEATED)
    found: dict[str, list[str]] = {}
    for name, value in query:
        key = name.lower() if name.isascii() else ""
        if key in _PARAMETERS:
            found.setdefault(key, []).append(value)
    for key, (canonical, _) in _PARAMETERS.items():
        count = len(found.get(key, ()))
        if count != 1:
            raise InvalidLink(f"{canonical} given {count} times", code=_MISSING_OR_REPEATED)
    values = {key: found[key][0] for key in _PARAMETERS}
    for key, (canonical, code) in _PARAMETERS.items():
        if len(values[key]) > MAX_VALUE_LENGTH:
            raise InvalidLink(f"{canonical} longer than {MAX_VALUE_LENGTH}", code=code)

    request_type = values["requesttype"]
    if request_type != REQUEST_TYPE_STUDY:
        raise InvalidLink(f"requestType is not STUDY: {_shown(request_type)}", code="E410")
    study_uid = values["studyuid"]
    if not is_uid(study_uid):
        raise InvalidLink(f"studyUID is not a UID: {_shown(study_uid)}", code="E411")
    accession = parse_accession(values["accessionnumber"])
    cda_id = values["idcda"]
    if not is_oid(cda_id):
        raise InvalidLink(f"idCDA is not an OID: {_shown(cda_id)}", code="E413")
    return ViewerLink(study_uid=study_uid, accession=accession, cda_id=cda_id)
