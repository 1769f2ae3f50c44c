"""The practice's local patient id on the Consumer (DB.VI-CS.32, PEUT): the patient of an
opened KOS looked up in the practice's own PACS by the KOS's INS, so that the viewer
shows the practice's PatientID in place of the Source's (the identity panel, and the
metadata OHIF draws its overlay from: :mod:`bff.dicomweb.series_metadata`).

How a practice PACS holds the INS (DB.VI-CS.29 note, DB.SO.39): PatientID is the
practice's own id (IPP) with its IssuerOfPatientID, and the INS matricule is an item of
(0010,1002) OtherPatientIDsSequence whose issuer is an INS OID: its
IssuerOfPatientIDQualifiersSequence UniversalEntityID, or its IssuerOfPatientID when that
is the OID itself.

The matching rule, step by step (every answer read bounded; the whole look-up within
``DRIMBOX_LOCAL_PATIENT_ID_TIMEOUT``):

1. Nothing is asked when the KOS has no INS, or none under a configured OID
   (``DRIMBOX_LOCAL_PATIENT_ID_ISSUERS``; the KOS's OID must be one of them).
2. Candidates: QIDO-RS ``/studies?OtherPatientIDsSequence.PatientID=<INS>`` (sequence
   matching, PS3.18) ``&PatientBirthDate=<KOS birth date>&includefield=00100021``.
   A PACS that does not match on sequences (Orthanc ignores the key) still narrows by
   birth date; either way the answer only proposes candidates, never proves one. A
   patient whose PatientID is the INS itself (exams kept as another site sent them, e.g.
   imported from a DRIMbox Source) has no local id and is left out.
   More than :data:`MAX_ROWS` studies, or more than :data:`MAX_PATIENTS` distinct local
   patients: undecided (the Source's id is shown).
3. Proof, per candidate local patient (PatientID + IssuerOfPatientID): the metadata of one
   instance of one of its studies (QIDO-RS ``/studies/{study}/instances?limit=1``, then
   WADO-RS ``.../instances/{sop}/metadata``) must hold an OtherPatientIDsSequence item
   whose PatientID is exactly the INS and whose issuer OID is the KOS's (when the KOS
   names one; else any configured OID).
4. Exactly one proven local patient: its PatientID (and IssuerOfPatientID) is shown.
   None: the Source's id is shown. Several (a duplicate in the practice's PACS): the
   Source's id is shown, and none of them is ever picked.

A failure (PACS down, slow, an answer too big or malformed) is logged, never audited
(nothing about the patient is written) and never blocks the opening: the Source's id is
shown. Outcomes other than failures are kept :data:`TTL_S` seconds (at most
:data:`MAX_ENTRIES`), keyed by the INS and its OID; a look-up under way is shared.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bff.archive.kos import KosRecord
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ViewerError

log = logging.getLogger(__name__)

PATIENT_ID = "00100020"
ISSUER_OF_PATIENT_ID = "00100021"
ISSUER_QUALIFIERS = "00100024"
UNIVERSAL_ENTITY_ID = "00400032"
OTHER_PATIENT_IDS = "00101002"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
#: Longest PatientID / IssuerOfPatientID (DICOM LO).
MAX_LO = 64
#: Candidate studies read at most (one more than this: undecided).
MAX_ROWS = 100
#: Distinct local patients proven at most (more: undecided).
MAX_PATIENTS = 8
#: Largest answer read from the practice's PACS, per request.
MAX_ANSWER_BYTES = 1 << 20
#: How long an outcome is kept, and how many.
TTL_S = 300.0
MAX_ENTRIES = 1024

Outcome = Literal["found", "none", "several", "undecided", "failed", "off"]


@dataclass(frozen=True)
class LocalPatient:
    """What the look-up concluded. ``patient_id`` is set for ``found`` only."""

    outcome: Outcome
    patient_id: str = field(default="", repr=False)
    issuer: str = field(default="", repr=False)

    @property
    def found(self) -> bool:
        return self.outcome == "found" and bool(self.patient_id)


OFF = LocalPatient("off")


def _values(row: Any, tag: str) -> list[Any]:
    if not isinstance(row, Mapping):
        return []
    element = row.get(tag)
    if not isinstance(element, Mapping):
        return []
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def _text(row: Any, tag: str) -> str:
    values = _values(row, tag)
    return values[0].strip() if values and isinstance(values[0], str) else ""


def _uid(row: Any, tag: str) -> str:
    """A UID of the PACS's answer, '' unless well-formed (it goes into a URL path)."""
    value = _text(row, tag)
    return value if len(value) <= 64 and _UID.fullmatch(value) else ""


def item_issuer(item: Any) -> str:
    """The issuer OID of an OtherPatientIDsSequence item: its qualifiers' UniversalEntityID,
    else its IssuerOfPatientID (some PACS write the OID there); '' when neither."""
    for qualifier in _values(item, ISSUER_QUALIFIERS):
        entity = _text(qualifier, UNIVERSAL_ENTITY_ID)
        if entity:
            return entity
    return _text(item, ISSUER_OF_PATIENT_ID)


def holds_ins(instance: Any, ins: str, oids: frozenset[str]) -> bool:
    """Whether an instance's metadata (DICOM JSON) holds the INS ``ins`` in its
    OtherPatientIDsSequence under one of ``oids`` (step 3 of the rule)."""
    return any(
        _text(item, PATIENT_ID) == ins and item_issuer(item) in oids
        for item in _values(instance, OTHER_PATIENT_IDS)
    )


def candidates(rows: Any, ins: str) -> dict[tuple[str, str], str] | None:
    """Step 2: the distinct local patients (PatientID, IssuerOfPatientID) of the candidate
    study rows, each with one of its studies; None when undecided (too many). A patient
    whose PatientID is the INS itself has no local id (exams kept as another site sent
    them): left out."""
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        return None
    found: dict[tuple[str, str], str] = {}
    for row in rows:
        patient_id, study_uid = _text(row, PATIENT_ID), _uid(row, STUDY_UID)
        issuer = _text(row, ISSUER_OF_PATIENT_ID)
        if len(patient_id) > MAX_LO or len(issuer) > MAX_LO:
            continue  # not a DICOM LO value: never shown
        if patient_id and study_uid and patient_id != ins:
            found.setdefault((patient_id, issuer), study_uid)
    return found if len(found) <= MAX_PATIENTS else None


def conclude(proven: list[tuple[str, str]]) -> LocalPatient:
    """Step 4: exactly one proven local patient, or none, or several (never one picked)."""
    if not proven:
        return LocalPatient("none")
    if len(proven) > 1:
        return LocalPatient("several")
    patient_id, issuer = proven[0]
    return LocalPatient("found", patient_id, issuer)


class LocalPatientIds:
    """The look-up service (one per application; off without a configured PACS)."""

    def __init__(
        self,
        upstream: DicomwebUpstream | None,
        issuers: frozenset[str],
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._issuers = issuers
        self._timeout = timeout
        self._clock = clock
        self._done: OrderedDict[tuple[str, str], tuple[float, LocalPatient]] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Task[LocalPatient]] = {}

    @property
    def enabled(self) -> bool:
        return self._upstream is not None

    def _oids(self, record: KosRecord) -> frozenset[str] | None:
        """The OIDs the INS may be issued under in the practice's PACS (step 1)."""
        if not record.ins:
            return None
        if record.ins_oid is None:  # the KOS names the INS by label only
            return self._issuers
        return frozenset({record.ins_oid}) & self._issuers or None

    def ask_ahead(self, record: KosRecord) -> None:
        """Start the look-up now (the hand-over), for the opening to find it done."""
        if self._upstream is not None and self._oids(record) is not None:
            self._start(record)

    async def find(self, record: KosRecord) -> LocalPatient:
        """The practice's patient for this KOS (never raises, bounded in time)."""
        if self._upstream is None:
            return OFF
        if self._oids(record) is None:
            return LocalPatient("none")
        key = (record.ins or "", record.ins_oid or "")
        kept = self._done.get(key)
        if kept is not None and kept[0] > self._clock():
            return kept[1]
        try:
            return await asyncio.shield(self._start(record))
        except Exception:  # the task logged it; the opening goes on
            return LocalPatient("failed")

    def _start(self, record: KosRecord) -> asyncio.Task[LocalPatient]:
        key = (record.ins or "", record.ins_oid or "")
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._run(key, record), name="local patient id")
            self._running[key] = task
        return task

    async def _run(self, key: tuple[str, str], record: KosRecord) -> LocalPatient:
        try:
            async with asyncio.timeout(self._timeout):
                outcome = await self._look_up(record)
        except (ViewerError, TimeoutError) as exc:
            # Never the INS nor the study in the log: the KOS is named by its UID only.
            log.warning("local patient id of KOS %s not looked up: %r", record.sop_uid, exc)
            return LocalPatient("failed")
        except Exception:
            log.exception("local patient id of KOS %s: unexpected failure", record.sop_uid)
            return LocalPatient("failed")
        finally:
            self._running.pop(key, None)
        self._done[key] = (self._clock() + TTL_S, outcome)
        self._done.move_to_end(key)
        while len(self._done) > MAX_ENTRIES:
            self._done.popitem(last=False)
        log.info("local patient id of KOS %s: %s", record.sop_uid, outcome.outcome)
        return outcome

    async def _look_up(self, record: KosRecord) -> LocalPatient:
        upstream = self._upstream
        oids = self._oids(record)
        assert upstream is not None and oids is not None and record.ins
        query = {
            "OtherPatientIDsSequence.PatientID": record.ins,
            "includefield": ISSUER_OF_PATIENT_ID,
            "limit": str(MAX_ROWS + 1),
        }
        if record.traits.birth_date:
            query["PatientBirthDate"] = record.traits.birth_date
        rows = await upstream.get_json_bounded("/studies", query, max_bytes=MAX_ANSWER_BYTES)
        patients = candidates(rows, record.ins)
        if patients is None:
            return LocalPatient("undecided")
        ins = record.ins
        checks = [self._proves(upstream, study, ins, oids) for study in patients.values()]
        results = await asyncio.gather(*checks)
        return conclude([p for p, ok in zip(patients, results, strict=True) if ok])

    async def _proves(
        self, upstream: DicomwebUpstream, study_uid: str, ins: str, oids: frozenset[str]
    ) -> bool:
        """Step 3: one instance of the study holds the INS under one of ``oids``."""
        rows = await upstream.get_json_bounded(
            f"/studies/{study_uid}/instances", {"limit": "1"}, max_bytes=MAX_ANSWER_BYTES
        )
        row = rows[0] if isinstance(rows, list) and rows else None
        series_uid, sop_uid = _uid(row, SERIES_UID), _uid(row, SOP_UID)
        if not (series_uid and sop_uid):
            return False
        metadata = await upstream.get_json_bounded(
            f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
            max_bytes=MAX_ANSWER_BYTES,
        )
        return isinstance(metadata, list) and any(holds_ins(i, ins, oids) for i in metadata)

    async def aclose(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        if self._upstream is not None:
            await self._upstream.aclose()
