"""Patient identity of the demo data, written the way DRIM-M samples write it (FACTS.md 1).

Shared by the image writer (:mod:`bff.demo.dataset`) and the KOS writer/parser
(:mod:`bff.demo.kos`) so that images and manifest carry exactly the same attributes:

- (0010,0010) PatientName ``BIRTHNAME^FIRSTGIVENNAME``;
- (0010,1001) OtherPatientNames ``^FIRSTGIVENNAME`` and ``BIRTHNAME^ALL GIVEN NAMES``;
- (0010,0020) PatientID = INS matricule, (0010,0021) IssuerOfPatientID
  ``ASIP-SANTE-INS-NIR``, (0010,0024) qualifiers UniversalEntityID ``1.2.250.1.213.1.4.10``
  type ``ISO``; repeated in (0010,1002) OtherPatientIDsSequence (TypeOfPatientID ``TEXT``),
  followed by the local identifier (IPP);
- (0010,0030) PatientBirthDate, (0010,0040) PatientSex;
- (0010,4000) PatientComments = birthplace INSEE code ('' when born abroad).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

INS_ISSUER = "ASIP-SANTE-INS-NIR"
INS_ISSUER_OID = "1.2.250.1.213.1.4.10"
LOCAL_ID_ISSUER = "DRIMBOX-DEMO-IPP"


@dataclass(frozen=True)
class PatientIdentity:
    birth_name: str
    given_names: tuple[str, ...]
    sex: str  # "F" / "M"
    birth_date: str  # YYYYMMDD
    birthplace: str  # INSEE code, '' when born abroad
    ins: str  # 15-digit INS matricule
    local_id: str  # local identifier (IPP) at the producing site

    @property
    def patient_name(self) -> str:
        first = self.given_names[0] if self.given_names else ""
        return f"{self.birth_name}^{first}"

    @property
    def other_patient_names(self) -> tuple[str, str]:
        first = self.given_names[0] if self.given_names else ""
        return (f"^{first}", f"{self.birth_name}^{' '.join(self.given_names)}")


ANS_TEST_PATIENT = PatientIdentity(
    "PAT-TROIS", ("DOMINIQUE",), "F", "19790328", "63220", "279035121518989", "IPP-0001"
)


def _ins_qualifiers() -> Sequence:
    item = Dataset()
    item.UniversalEntityID = INS_ISSUER_OID
    item.UniversalEntityIDType = "ISO"
    return Sequence([item])


def add_patient_module(ds: Dataset, patient: PatientIdentity) -> None:
    """Set the Patient module attributes of ``ds`` from ``patient`` (FACTS.md 1)."""
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.ins
    ds.IssuerOfPatientID = INS_ISSUER
    ds.IssuerOfPatientIDQualifiersSequence = _ins_qualifiers()
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.OtherPatientNames = list(patient.other_patient_names)
    ins_item = Dataset()
    ins_item.PatientID = patient.ins
    ins_item.IssuerOfPatientID = INS_ISSUER
    ins_item.IssuerOfPatientIDQualifiersSequence = _ins_qualifiers()
    ins_item.TypeOfPatientID = "TEXT"
    local_item = Dataset()
    local_item.PatientID = patient.local_id
    local_item.IssuerOfPatientID = LOCAL_ID_ISSUER
    local_item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([ins_item, local_item])
    ds.PatientComments = patient.birthplace


def read_patient_module(ds: Dataset) -> PatientIdentity:
    """Mirror of :func:`add_patient_module` (for tests and demo tooling)."""
    name = str(ds.get("PatientName", ""))
    birth_name, _, first = name.partition("^")
    given: tuple[str, ...] = (first,) if first else ()
    others = ds.get("OtherPatientNames")
    values = list(others) if isinstance(others, MultiValue) else ([others] if others else [])
    for value in values:
        family, _, all_given = str(value).partition("^")
        if family == birth_name and all_given:
            given = tuple(all_given.split(" "))
    local_id = ""
    for item in ds.get("OtherPatientIDsSequence", []):
        if item.get("IssuerOfPatientID") != INS_ISSUER:
            local_id = str(item.get("PatientID", ""))
            break
    return PatientIdentity(
        birth_name=birth_name,
        given_names=given,
        sex=str(ds.get("PatientSex", "")),
        birth_date=str(ds.get("PatientBirthDate", "")),
        birthplace=str(ds.get("PatientComments", "")),
        ins=str(ds.get("PatientID", "")),
        local_id=local_id,
    )
