"""Parse an IMG-KOS manifest into the record the KOS archive keeps (DB.SO.22).

Every access check of the Source viewer is made against this record, never against the
images: idCDA (DB.VI-SO.115, through the archive's (KOS, CDA id) link), accession number
+ issuer / study (DB.VI-SO.33) and the INS traits (DB.VI-SO.152).

Layout read (FACTS.md 1, DRIM-M samples), with the fallbacks real producers need:

- SOP Class must be Key Object Selection Document (1.2.840.10008.5.1.4.1.1.88.59);
- the evidence (0040,A375) must reference exactly one study, with at least one series;
  series items repeating the same SeriesInstanceUID are merged;
- accession number: from the (0040,A370) ReferencedRequestSequence item whose
  StudyInstanceUID is the evidence study (an item without StudyInstanceUID is accepted
  when it is the only one), issuer from its (0008,0051) IssuerOfAccessionNumberSequence.
  The top-level AccessionNumber + (0008,0051) are read only when the request sequence is
  absent or empty (DRIM-M leaves the top-level value empty);
- birth name = family name component of PatientName;
- birth given names (:func:`birth_given_names`): the longest list found among the given
  (+ middle) components of PatientName and of the OtherPatientNames values whose family
  component is empty or equals the birth name; split on spaces and commas, hyphenated
  names kept whole, ties won by the first candidate (PatientName first);
- birthplace = PatientComments when it is a 5-character INSEE code (``63220``, ``2A004``,
  or ``99xxx`` for a country when born abroad), else '' (the comments are free text);
- INS: the PatientID (top level, else an OtherPatientIDsSequence item) whose issuer is an
  INS OID (:data:`INS_OIDS`), given by IssuerOfPatientIDQualifiersSequence
  UniversalEntityID or by IssuerOfPatientID itself; without any OID, an IssuerOfPatientID
  label ``ASIP-SANTE-INS-NIR``/``-NIA`` marks the INS too (``ins_oid`` then None). A value
  so marked that is not a 15-character matricule is refused. The local id (IPP) is the
  first other patient id (top level first, then OtherPatientIDsSequence);
- InstitutionName may be an XON-like value ``Name^^^^^^^^^id``: the name part is kept too;
- document title 113030 (DCM) = manifest; any other title (113000 "Of Interest" ...) is a
  key image note (KIN); the 113012 "Key Object Description" TEXT item is the description.

Text values are decoded by pydicom according to SpecificCharacterSet (ISO_IR 100 latin-1,
ISO_IR 192 UTF-8 ...).
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections import abc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from bff.dicomweb.part10 import DeflatedDataset, refuse_deflated

KOS_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.59"
MANIFEST_CODE = ("113030", "DCM")
KEY_OBJECT_DESCRIPTION_CODE = ("113012", "DCM")

#: INS OIDs (Référentiel INS): INS-NIR, INS-NIA, and their test counterparts. DRIM-M
#: samples use the test NIR OID ``1.2.250.1.213.1.4.10`` (FACTS.md 1).
INS_OIDS = frozenset(
    {
        "1.2.250.1.213.1.4.8",  # INS-NIR
        "1.2.250.1.213.1.4.9",  # INS-NIA
        "1.2.250.1.213.1.4.10",  # INS-NIR (test)
        "1.2.250.1.213.1.4.11",  # INS-NIA (test)
    }
)

#: IssuerOfPatientID labels of the INS (DRIM-M samples write ``ASIP-SANTE-INS-NIR``),
#: recognised when no OID is given.
INS_ISSUER_NAMES = frozenset({"ASIP-SANTE-INS-NIR", "ASIP-SANTE-INS-NIA"})

_UID = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")
# Matricule INS: sex, year, month, department (2A/2B for Corsica), commune, order, key.
_INS = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}$")
_INSEE_PLACE = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
_DATE = re.compile(r"^[0-9]{8}$")
_NAME_SEPARATORS = re.compile(r"[\s,]+")
_SEXES = frozenset({"F", "M", "O", "U"})


class KosError(ValueError):
    """The object is not a KOS the archive can keep (English message, for the log)."""


class DeflatedKos(KosError):
    """The KOS is in a deflated transfer syntax: refused before anything is inflated."""


@dataclass(frozen=True)
class InsTraits:
    """The INS traits compared with FranceConnect+ (DB.VI-SO.152)."""

    birth_name: str
    given_names: tuple[str, ...]  # every birth given name, in order
    sex: str  # 'F' | 'M' | 'O' | 'U'
    birth_date: str  # YYYYMMDD, '' when absent
    birthplace: str  # INSEE code (99xxx: country, born abroad), '' when absent


@dataclass(frozen=True)
class KosSeries:
    series_uid: str
    retrieve_url: str | None
    instances: tuple[tuple[str, str], ...]  # (sop_class_uid, sop_uid)


@dataclass(frozen=True)
class KosRecord:
    sop_uid: str
    study_uid: str
    accession_number: str
    accession_issuer: str  # UniversalEntityID (an OID), '' when the KOS gives none
    accession_issuer_type: str  # UniversalEntityIDType, e.g. 'ISO'
    traits: InsTraits
    ins: str | None  # INS matricule (15 characters)
    ins_oid: str | None
    local_patient_id: str | None  # IPP
    institution_name: str
    institution_raw: str
    series: tuple[KosSeries, ...]
    is_key_image_note: bool
    description: str


def record_to_json(record: KosRecord) -> dict[str, Any]:
    """The record as plain JSON data (a stored session's or hand-over's study)."""
    return dataclasses.asdict(record)


def record_from_json(data: dict[str, Any]) -> KosRecord:
    """The record :func:`record_to_json` wrote (KeyError/TypeError when malformed)."""
    traits = dict(data["traits"])
    series = tuple(
        KosSeries(
            str(s["series_uid"]),
            s["retrieve_url"],
            tuple((str(c), str(u)) for c, u in s["instances"]),
        )
        for s in data["series"]
    )
    values = {k: v for k, v in data.items() if k not in ("traits", "series")}
    return KosRecord(
        **values,
        traits=InsTraits(**{**traits, "given_names": tuple(traits["given_names"])}),
        series=series,
    )


def read_kos(data: bytes | Path) -> KosRecord:
    """Read a DICOM Part-10 KOS (bytes or a file) and parse it; any failure is a KosError
    (:class:`DeflatedKos` for a deflated one, refused from its file meta, never inflated).

    Outside input (issue 13): the data set is read only up to pixel data (a KOS has
    none); its size is bounded by the caller (``DRIMBOX_MAX_KOS_BYTES`` over HTTP). No
    ``defer_size``: pydicom 3.0 gives a deferred text element back as undecoded bytes.
    Blocking: request handlers run it in a worker thread."""
    try:
        with _open(data) as source:
            try:
                refuse_deflated(source)
            except DeflatedDataset as exc:
                raise DeflatedKos(str(exc)) from exc
            ds = pydicom.dcmread(source, stop_before_pixels=True)
            return parse_kos(ds)
    except KosError:
        raise
    except OSError as exc:
        raise KosError(f"cannot read the KOS file: {exc}") from exc
    except Exception as exc:  # untrusted input: every pydicom failure is a bad KOS
        raise KosError(f"not a readable DICOM Part-10 object ({type(exc).__name__})") from exc


def _open(data: bytes | Path) -> BinaryIO:
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(data)
    return open(data, "rb")  # closed by the caller's with


def parse_kos(ds: Dataset) -> KosRecord:
    sop_class_uid = _text(ds, "SOPClassUID")
    if sop_class_uid != KOS_SOP_CLASS_UID:
        raise KosError(f"not a Key Object Selection Document (SOP class {sop_class_uid!r})")
    sop_uid = _uid(_text(ds, "SOPInstanceUID"), "SOPInstanceUID")
    study_uid, series = _evidence(ds)
    accession_number, issuer, issuer_type = _accession(ds, study_uid)
    ins, ins_oid, local_id = _patient_ids(ds)
    institution_raw = _text(ds, "InstitutionName")
    return KosRecord(
        sop_uid=sop_uid,
        study_uid=study_uid,
        accession_number=accession_number,
        accession_issuer=issuer,
        accession_issuer_type=issuer_type,
        traits=_traits(ds),
        ins=ins,
        ins_oid=ins_oid,
        local_patient_id=local_id,
        institution_name=institution_raw.partition("^")[0].strip(),
        institution_raw=institution_raw,
        series=series,
        is_key_image_note=_is_key_image_note(ds),
        description=_description(ds),
    )


def birth_given_names(patient_name: Any, other_patient_names: Iterable[Any]) -> tuple[str, ...]:
    """The full list of birth given names (rule in the module docstring).

    PatientName ``PAT-TROIS^MARIE`` with OtherPatientNames ``^MARIE`` and
    ``PAT-TROIS^MARIE CLAIRE`` gives ``("MARIE", "CLAIRE")``.
    """
    name = _person_name(patient_name)
    birth_name = name.family_name.strip()
    best = _given_list(name)
    for value in other_patient_names:
        other = _person_name(value)
        family = other.family_name.strip()
        if family and family.casefold() != birth_name.casefold():
            continue  # another person's name form (e.g. a used name): not a birth name
        candidate = _given_list(other)
        if len(candidate) > len(best):
            best = candidate
    return best


# -- pieces -------------------------------------------------------------------------------


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or isinstance(value, str | bytes | PersonName):
        return [value] if value else []
    if isinstance(value, abc.Sequence):  # MultiValue and pydicom's Sequence
        return list(value)
    return [value]


def _uid(value: str, what: str) -> str:
    if not value or len(value) > 64 or not _UID.fullmatch(value):
        raise KosError(f"{what} is missing or not a UID: {value[:80]!r}")
    return value


def _code(item: Dataset) -> tuple[str, str]:
    return (_text(item, "CodeValue"), _text(item, "CodingSchemeDesignator"))


def _evidence(ds: Dataset) -> tuple[str, tuple[KosSeries, ...]]:
    studies = _values(ds, "CurrentRequestedProcedureEvidenceSequence")
    if len(studies) != 1:
        raise KosError(
            f"CurrentRequestedProcedureEvidenceSequence must reference exactly one study, "
            f"found {len(studies)}"
        )
    study = studies[0]
    study_uid = _uid(_text(study, "StudyInstanceUID"), "evidence StudyInstanceUID")
    merged: dict[str, tuple[str | None, dict[str, str]]] = {}
    for item in _values(study, "ReferencedSeriesSequence"):
        series_uid = _uid(_text(item, "SeriesInstanceUID"), "evidence SeriesInstanceUID")
        retrieve_url = _text(item, "RetrieveURL") or None
        previous_url, instances = merged.setdefault(series_uid, (retrieve_url, {}))
        if previous_url is None and retrieve_url is not None:
            merged[series_uid] = (retrieve_url, instances)
        for sop in _values(item, "ReferencedSOPSequence"):
            sop_uid = _uid(_text(sop, "ReferencedSOPInstanceUID"), "ReferencedSOPInstanceUID")
            sop_class_uid = _uid(_text(sop, "ReferencedSOPClassUID"), "ReferencedSOPClassUID")
            instances.setdefault(sop_uid, sop_class_uid)
        if not instances:
            raise KosError(f"evidence series {series_uid} references no instance")
    if not merged:
        raise KosError(f"evidence study {study_uid} references no series")
    series = tuple(
        KosSeries(
            series_uid=series_uid,
            retrieve_url=retrieve_url,
            instances=tuple((cls, uid) for uid, cls in instances.items()),
        )
        for series_uid, (retrieve_url, instances) in merged.items()
    )
    return study_uid, series


def _issuer(item: Dataset) -> tuple[str, str]:
    issuers = _values(item, "IssuerOfAccessionNumberSequence")
    if not issuers:
        return "", ""
    return _text(issuers[0], "UniversalEntityID"), _text(issuers[0], "UniversalEntityIDType")


def _accession(ds: Dataset, study_uid: str) -> tuple[str, str, str]:
    requests = _values(ds, "ReferencedRequestSequence")
    if not requests:
        source = ds  # no request sequence: the top-level value (not a DRIM-M layout)
    else:
        matching = [r for r in requests if _text(r, "StudyInstanceUID") == study_uid]
        if not matching and len(requests) == 1 and not _text(requests[0], "StudyInstanceUID"):
            matching = requests
        if not matching:
            raise KosError(f"no ReferencedRequestSequence item for the evidence study {study_uid}")
        distinct = {(_text(r, "AccessionNumber"), _issuer(r)) for r in matching}
        if len(distinct) > 1:
            raise KosError(
                f"{len(distinct)} different requests (accession numbers) for study {study_uid}"
            )
        source = matching[0]
    accession_number = _text(source, "AccessionNumber")
    if not accession_number:
        raise KosError("the KOS gives no accession number (DB.VI-SO.33 needs one)")
    issuer, issuer_type = _issuer(source)
    return accession_number, issuer, issuer_type


def _ins_issuer(item: Dataset) -> tuple[bool, str | None]:
    """(is the id an INS, its INS OID): qualifiers UniversalEntityID first, then
    IssuerOfPatientID holding the OID itself or the ANS label (the OID then unknown)."""
    for qualifier in _values(item, "IssuerOfPatientIDQualifiersSequence"):
        oid = _text(qualifier, "UniversalEntityID")
        if oid:
            return (True, oid) if oid in INS_OIDS else (False, None)
    issuer = _text(item, "IssuerOfPatientID")
    if issuer in INS_OIDS:
        return True, issuer
    return issuer.upper() in INS_ISSUER_NAMES, None


def _patient_ids(ds: Dataset) -> tuple[str | None, str | None, str | None]:
    """(INS, INS OID, local id): top-level PatientID first, then OtherPatientIDsSequence."""
    ins: str | None = None
    ins_oid: str | None = None
    local_id: str | None = None
    for item in [ds, *_values(ds, "OtherPatientIDsSequence")]:
        patient_id = _text(item, "PatientID")
        if not patient_id:
            continue
        is_ins, oid = _ins_issuer(item)
        if is_ins:
            if not _INS.fullmatch(patient_id):
                raise KosError("the PatientID issued as an INS is not an INS matricule")
            if ins is None or (ins_oid is None and oid is not None and patient_id == ins):
                ins, ins_oid = patient_id, oid
        elif local_id is None:
            local_id = patient_id
    if local_id is not None and local_id == ins:
        local_id = None
    return ins, ins_oid, local_id


def _person_name(value: Any) -> PersonName:
    return value if isinstance(value, PersonName) else PersonName(str(value or ""))


def _given_list(name: PersonName) -> tuple[str, ...]:
    given = f"{name.given_name} {name.middle_name}"
    return tuple(part for part in _NAME_SEPARATORS.split(given) if part)


def _traits(ds: Dataset) -> InsTraits:
    name = ds.get("PatientName")
    birth_name = _person_name(name).family_name.strip() if name else ""
    if not birth_name:
        raise KosError("the KOS gives no patient birth name (PatientName family component)")
    sex = _text(ds, "PatientSex").upper() or "U"
    if sex not in _SEXES:
        raise KosError(f"PatientSex is not F, M, O or U: {sex[:8]!r}")
    birth_date = _text(ds, "PatientBirthDate")
    if birth_date and not _DATE.fullmatch(birth_date):
        raise KosError("PatientBirthDate is not YYYYMMDD")
    comments = _text(ds, "PatientComments").upper()
    return InsTraits(
        birth_name=birth_name,
        given_names=birth_given_names(name, _values(ds, "OtherPatientNames")),
        sex=sex,
        birth_date=birth_date,
        birthplace=comments if _INSEE_PLACE.fullmatch(comments) else "",
    )


def _is_key_image_note(ds: Dataset) -> bool:
    titles = _values(ds, "ConceptNameCodeSequence")
    if not titles:
        raise KosError("the KOS has no document title (ConceptNameCodeSequence)")
    return _code(titles[0]) != MANIFEST_CODE


def _description(ds: Dataset) -> str:
    for item in _values(ds, "ContentSequence"):
        if _text(item, "ValueType") != "TEXT":
            continue
        names = _values(item, "ConceptNameCodeSequence")
        if names and _code(names[0]) == KEY_OBJECT_DESCRIPTION_CODE:
            return str(item.get("TextValue", "")).strip()
    return ""
