"""The checks of the Source WADO-RS API (this DRIMbox answering Consumer DRIMboxes),
over the KOS archive and the PACS's patient id, before any response header is sent:
the KOS named by ``KOS-SOPInstanceUID`` references what is asked and is published
(404 / 410), and the PACS's PatientID is the archive's INS or IPP (406, DB.SO.47).
PACS failures become the statuses of Tableau 2 (:func:`pacs_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from bff.archive.store import ArchivedKos
from bff.audit import audit
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import (
    NotFound,
    SourceGone,
    SourceKosNotFound,
    SourcePacsTimeout,
    SourcePacsUnavailable,
    SourcePatientMismatch,
    UpstreamError,
    UpstreamTimeout,
    ViewerError,
)

log = logging.getLogger(__name__)

PATIENT_ID = "00100020"
MAX_UID_LENGTH = 64


def check_kos_uid(kos_uid: str) -> str:
    """The ``KOS-SOPInstanceUID`` header's value, or the refusal (S404)."""
    kos_uid = kos_uid.strip()
    if not kos_uid or len(kos_uid) > MAX_UID_LENGTH:
        raise SourceKosNotFound("KOS-SOPInstanceUID missing or too long")
    return kos_uid


def check_kos(
    kos: ArchivedKos | None,
    kos_uid: str,
    locations: Collection[str],
    study_uid: str,
    series_uid: str,
    sop_uid: str | None,
) -> ArchivedKos:
    """The KOS named by the request (``kos``: what the archive holds under ``kos_uid``)
    references what is asked, and a location of this DRIMbox serves it (the
    DRIMbox-to-DRIMbox API answers for every connected PACS: the KOS archive says which
    PACS holds the exam)."""
    if kos is None or (kos.location not in locations and "*" not in locations):
        raise SourceKosNotFound(f"KOS {kos_uid} unknown here")
    record = kos.record
    if record.study_uid != study_uid:
        raise SourceKosNotFound(f"KOS {kos_uid} is not about the study asked")
    series = next((s for s in record.series if s.series_uid == series_uid), None)
    if series is None:
        raise SourceKosNotFound(f"KOS {kos_uid} does not reference the series asked")
    if sop_uid is not None and sop_uid not in {uid for _, uid in series.instances}:
        raise SourceKosNotFound(f"KOS {kos_uid} does not reference the instance asked")
    if kos.state != "published":
        raise SourceGone(f"KOS {kos_uid} is {kos.state}")
    return kos


def pacs_error(exc: ViewerError, what: str) -> ViewerError:
    """Our upstream errors as the statuses of Tableau 2 (404 upstream = exam/series gone)."""
    if isinstance(exc, NotFound):
        return SourceGone(f"{what}: the PACS no longer has it")
    if isinstance(exc, UpstreamTimeout):
        return SourcePacsTimeout(f"{what}: {exc.detail}")
    if isinstance(exc, UpstreamError):
        return SourcePacsUnavailable(f"{what}: {exc.code} {exc.detail}")
    return exc


async def check_patient_id(upstream: DicomwebUpstream, kos: ArchivedKos, location: str) -> None:
    """Tableau 2 E209: the PACS's PatientID must be the archive's INS or IPP."""
    record = kos.record
    try:
        rows = await upstream.get_json(
            "/studies", {"StudyInstanceUID": record.study_uid, "includefield": PATIENT_ID}
        )
    except ViewerError as exc:
        raise pacs_error(exc, "patient id check") from exc
    if not isinstance(rows, list) or not rows:
        raise SourceGone(f"study {record.study_uid} not in the PACS")
    expected = {i for i in (record.ins, record.local_patient_id) if i}
    found = {_patient_id(row) for row in rows}
    if not expected:
        log.warning("KOS %s has no patient id: check skipped", record.sop_uid)
        return
    if not found & expected:
        audit(
            "source_patient_id_mismatch",
            location=location,
            study_uid=record.study_uid,
            kos_sop_uid=record.sop_uid,
        )
        raise SourcePatientMismatch(f"patient id in the PACS differs for {record.study_uid}")


def _patient_id(row: Any) -> str:
    try:
        return str((row.get(PATIENT_ID, {}).get("Value") or [""])[0])
    except (AttributeError, IndexError, TypeError):
        return ""
