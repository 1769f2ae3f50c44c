"""The one access decision (STYLE.md point 9), over plain data: may this request see this
study, and what answers for it?

A session is granted the studies whose checks succeeded (DB.VI-SO.115, .33, .152), each
through the location it was opened on (DB.VI-SO.127). A grant entry names its origin:
the local PACS (a report link, checked against the KOS archive) or a remote DRIMbox
Source (a KOS opened on the Consumer, keyed by that KOS's SOP Instance UID). The two
kinds never match each other, so a study opened from a KOS is never answered from a
local PACS (issue 12). A refusal is answered exactly as a study that does not exist (404),
before any byte is fetched upstream. ``open_access`` (the facade's own tests only) admits
every study of the location's PACS to a request without a grant; it is never on in a
deployment.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from bff.archive.kos import KosRecord, record_from_json, record_to_json


@dataclass(frozen=True)
class RemoteOpening:
    """A study opened on the Consumer from a KOS of the DMP (DB.VI-CS.05): answered by
    the DRIMbox Source(s) the KOS names. The live origin is rebuilt from this."""

    record: KosRecord
    #: the KOS as the Consumer received it (the study download includes it)
    kos_bytes: bytes = field(default=b"", repr=False)
    #: the practice's local patient id found by the KOS's INS, and its issuer: shown in
    #: place of the Source's PatientID (DB.VI-CS.32); '' when none was found
    local_patient_id: str = field(default="", repr=False)
    local_patient_issuer: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (stored with a session or a hand-over, sealed)."""
        return {
            "record": record_to_json(self.record),
            "kos": base64.b64encode(self.kos_bytes).decode("ascii"),
            "local_patient_id": self.local_patient_id,
            "local_patient_issuer": self.local_patient_issuer,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteOpening:
        return cls(
            record_from_json(data["record"]),
            base64.b64decode(data["kos"]),
            local_patient_id=str(data.get("local_patient_id", "")),
            local_patient_issuer=str(data.get("local_patient_issuer", "")),
        )


@dataclass(frozen=True)
class StudyRef:
    """One granted study: where it was opened and what answers for it."""

    location: str
    study_uid: str
    #: The KOS that granted it: published in our archive (a report link), or opened on the
    #: Consumer (then ``remote`` is set); '' for the facade's own open-access tests.
    kos_sop_uid: str = ""
    #: Institution Name from the KOS (DB.VI-CS.29, Tableau 3); '' keeps the images'.
    institution: str = ""
    #: Set for a study opened from a KOS on the Consumer: its remote Source answers.
    remote: RemoteOpening | None = field(default=None, compare=False, repr=False)
    #: The series the grant covers (the KOS's); empty: every series of the study.
    series_uids: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Grant:
    """What a session may see, and (Consumer) the user's PSC access token, which the
    remote Sources are asked with; never sent to the browser."""

    studies: tuple[StudyRef, ...]
    access_token: str = field(default="", repr=False)

    def study_uids(self, location: str) -> list[str]:
        return sorted({ref.study_uid for ref in self.studies if ref.location == location})

    def find(self, location: str, study_uid: str) -> StudyRef | None:
        for ref in self.studies:
            if ref.location == location and ref.study_uid == study_uid:
                return ref
        return None


def allowed(
    grant: Grant | None, location: str, study_uid: str, *, open_access: bool
) -> StudyRef | None:
    """The grant entry that admits this study through this location, else None. Without
    any grant, ``open_access`` admits the location's PACS only."""
    if grant is None:
        return StudyRef(location, study_uid) if open_access else None
    return grant.find(location, study_uid)
