"""The patient id of the images against the KOS archive (spec note after DB.VI-SO.33,
DB.SO.134): the PACS's PatientID for the study must be the INS or the IPP the archive
holds for the exam. A mismatch is traced for the administrator (DB.SO.47) and refused,
before anything of the images is served, by both ways in:

- the Source viewer (:func:`check_images_patient`, at the grant): E425, E426 when the
  PACS does not hold the exam; the PACS's own failures keep their E50x codes (an outage
  is never shown as a refusal, DB.VI-SO.28);
- the Source API (:func:`bff.access.source_api.check_patient_id`): 406, Consumer E209.

One PACS question (QIDO-RS, the study's PatientID) and one rule
(:func:`images_patient_agrees`).
"""

from __future__ import annotations

import logging
from typing import Any

from bff.archive.store import ArchivedKos
from bff.audit import audit
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ExamNotInPacs, NotFound, PatientIdMismatch, ViewerError

log = logging.getLogger(__name__)

PATIENT_ID = "00100020"


async def images_patient_agrees(
    upstream: DicomwebUpstream, kos: ArchivedKos, location: str, *, event: str
) -> bool:
    """Whether the PACS's PatientID for the exam is the archive's INS or IPP (True when
    the archive has neither: nothing to compare, logged). A mismatch is traced for the
    administrator (DB.SO.47) under ``event``, without any id. The PACS's failures are
    raised as our upstream errors (E502-E505); NotFound when it does not hold the exam."""
    record = kos.record
    rows = await upstream.get_json(
        "/studies", {"StudyInstanceUID": record.study_uid, "includefield": PATIENT_ID}
    )
    if not isinstance(rows, list) or not rows:
        raise NotFound(f"study {record.study_uid} not in the PACS")
    expected = {i for i in (record.ins, record.local_patient_id) if i}
    if not expected:
        log.warning("KOS %s has no patient id: check skipped", record.sop_uid)
        return True
    if {_patient_id(row) for row in rows} & expected:
        return True
    audit(event, location=location, study_uid=record.study_uid, kos_sop_uid=record.sop_uid)
    return False


async def check_images_patient(upstream: DicomwebUpstream, kos: ArchivedKos, location: str) -> None:
    """The Source viewer's check, at the grant (after the link and identity checks): the
    refusals and failures carry the producing site's name (the KOS's Institution Name),
    which the user may see by then."""
    failure: ViewerError | None = None
    try:
        if not await images_patient_agrees(upstream, kos, location, event="patient_id_mismatch"):
            failure = PatientIdMismatch(
                f"patient id in the PACS differs for {kos.record.study_uid}"
            )
    except NotFound as exc:
        failure = ExamNotInPacs(exc.detail)
    except ViewerError as exc:
        failure = exc
    if failure is not None:
        failure.site = kos.record.institution_name
        raise failure


def _patient_id(row: Any) -> str:
    try:
        return str((row.get(PATIENT_ID, {}).get("Value") or [""])[0])
    except (AttributeError, IndexError, TypeError):
        return ""
