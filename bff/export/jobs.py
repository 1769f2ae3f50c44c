"""Export jobs: an exam (or one of its series) sent to the practice's PACS in the
background, its progress and French result kept for the viewer to poll (DB.VI-CO.42).

Bounds: one export running per user (their PSC subject), DRIMBOX_EXPORT_MAX_JOBS on the
server (beyond: E461); one instance in memory at a time (C-STORE) or one STOW-RS batch
(DRIMBOX_EXPORT_BATCH_BYTES); every wait bounded (the Source's DRIMBOX_SOURCE_TIMEOUT, the
destination's DRIMBOX_EXPORT_TIMEOUT). The last job of each user is kept for its result,
the oldest finished ones dropped past :data:`MAX_KEPT`.

What is sent: each series of the grant (the KOS's) as the Source sends it, the stored
syntax, never decoded nor re-encoded (:meth:`StudyOrigin.stream_series`, the same
stream as the study download); an instance that is not of the study and series asked is
not sent. Audited (event ``pacs_export``): who, destination, study, series, counts,
outcome; never patient identity values.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from bff.audit import audit
from bff.errors import (
    DestinationRefused,
    ExportBusy,
    ExportIncomplete,
    UnknownDestination,
    UpstreamProtocolError,
    ViewerError,
)
from bff.export.senders import Sender, make_sender, tls_context
from bff.origins.base import StudyOrigin
from bff.settings import ExportDestination, Settings

log = logging.getLogger(__name__)

#: Finished jobs kept for their result (the oldest go first).
MAX_KEPT = 1000


def images(count: int) -> str:
    """'12 images envoyées'; French makes 0 and 1 singular."""
    return f"{count} image envoyée" if count <= 1 else f"{count} images envoyées"


@dataclass
class ExportJob:
    """One export and how it stands (what the viewer polls)."""

    id: str
    subject: str
    study_uid: str
    #: the one series asked, or '' for the whole exam
    series_uid: str
    destination: ExportDestination
    #: instances the KOS lists for what is sent (None: unknown)
    total: int | None
    started: float = field(default_factory=time.monotonic)
    state: str = "running"  # running | done | failed
    read: int = 0
    stored: int = 0
    refused: int = 0
    skipped: int = 0
    error: ViewerError | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def message(self) -> str:
        """How it stands, in French, for the user."""
        name = self.destination.name
        if self.state == "running":
            of = f" sur {self.total}" if self.total else ""
            return f"Export en cours vers {name} : {images(self.stored)}{of}."
        if self.error is None:
            return f"Export terminé : {images(self.stored)} à {name}."
        return f"{self.error.message} ({images(self.stored)} à {name}.)"

    def audit_fields(self) -> dict[str, Any]:
        """Who exports what where (the audit trail; no patient identity values)."""
        return {
            "subject": self.subject,
            "destination": self.destination.name,
            "protocol": self.destination.protocol,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid or None,
            "total": self.total,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid or None,
            "destination": self.destination.name,
            "state": self.state,
            "total": self.total,
            "sent": self.stored,
            "refused": self.refused,
            "code": self.error.code if self.error else None,
            "message": self.message(),
        }


def _checked_part10(data: bytes, study_uid: str, series_uid: str) -> bytes | None:
    """The instance as a Part-10 file, or None when it is not of this study and series
    (a Source sending more than the KOS grants: not exported)."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
        raise UpstreamProtocolError(f"unreadable DICOM instance: {exc}") from exc
    if str(ds.get("StudyInstanceUID", "")) != study_uid or (
        str(ds.get("SeriesInstanceUID", "")) != series_uid
    ):
        return None
    if len(data) > 132 and data[128:132] == b"DICM":
        return data  # as the Source sent it
    full = pydicom.dcmread(BytesIO(data), force=True)
    out = BytesIO()
    full.save_as(out, enforce_file_format=True)
    return out.getvalue()


class PacsExports:
    """The export jobs of this server and its configured destinations."""

    def __init__(self, settings: Settings) -> None:
        self.destinations = settings.export_destination_list()
        self._timeout = settings.export_timeout
        self._max_jobs = settings.export_max_jobs
        self._batch_bytes = settings.export_batch_bytes
        self._auth: dict[str, str] = {}
        self._tls: dict[str, ssl.SSLContext | bool] = {}
        self._jobs: dict[str, ExportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        """Read the destinations' credentials and CA bundles (at start: a missing or
        unreadable file stops it)."""
        for destination in self.destinations:
            self._tls[destination.id] = tls_context(destination)
            if destination.auth_file:
                text = Path(destination.auth_file).read_text(encoding="utf-8").strip()
                self._auth[destination.id] = text

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def enabled(self) -> bool:
        return bool(self.destinations)

    def destination(self, destination_id: str) -> ExportDestination:
        for destination in self.destinations:
            if destination.id == destination_id:
                return destination
        raise UnknownDestination(f"no export destination {destination_id[:20]!r}")

    def job_of(self, subject: str, study_uid: str) -> ExportJob | None:
        job = self._jobs.get(subject)
        return job if job is not None and job.study_uid == study_uid else None

    def admit(self, subject: str) -> None:
        """E461 when ``subject`` already exports, or the server runs its maximum."""
        earlier = self._jobs.get(subject)
        if earlier is not None and earlier.running:
            raise ExportBusy("an export of this user is running")
        if sum(1 for j in self._jobs.values() if j.running) >= self._max_jobs:
            raise ExportBusy(
                "too many exports running",
                message=(
                    "Le serveur effectue déjà le nombre maximal d'exports simultanés. "
                    "Veuillez réessayer dans quelques minutes."
                ),
            )

    def start(
        self,
        subject: str,
        origin: StudyOrigin,
        destination: ExportDestination,
        series_uids: tuple[str, ...],
        *,
        series_uid: str = "",
        total: int | None = None,
    ) -> ExportJob:
        """Start exporting ``series_uids`` of ``origin``'s study; E461 when this user
        already exports or the server runs its maximum."""
        self.admit(subject)
        job = ExportJob(
            secrets.token_hex(8), subject, origin.study_uid, series_uid, destination, total
        )
        self._jobs.pop(subject, None)
        self._jobs[subject] = job
        self._forget_old()
        sender = make_sender(
            destination,
            auth=self._auth.get(destination.id, ""),
            timeout=self._timeout,
            batch_bytes=self._batch_bytes,
            verify=self._tls.get(destination.id, True),
        )
        audit("pacs_export_started", **job.audit_fields())
        task = asyncio.create_task(self._run(job, origin, series_uids, sender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def _forget_old(self) -> None:
        if len(self._jobs) <= MAX_KEPT:
            return
        finished = [s for s, j in self._jobs.items() if not j.running]
        for subject in finished[: len(self._jobs) - MAX_KEPT]:
            del self._jobs[subject]

    async def _run(
        self, job: ExportJob, origin: StudyOrigin, series_uids: tuple[str, ...], sender: Sender
    ) -> None:
        try:
            for series_uid in series_uids:
                async with origin.stream_series(series_uid) as parts:
                    async for part in parts:
                        data = await asyncio.to_thread(
                            _checked_part10, part.body, job.study_uid, series_uid
                        )
                        job.read += 1
                        if data is None:
                            job.skipped += 1
                            continue
                        await sender.send(data)
                        job.stored, job.refused = sender.tally.stored, sender.tally.refused
            await sender.finish()
            job.stored, job.refused = sender.tally.stored, sender.tally.refused
            if job.refused and job.stored:
                job.error = ExportIncomplete(f"{job.refused} instances refused")
            elif job.refused:
                job.error = DestinationRefused("every instance refused")
        except ViewerError as exc:
            job.error = exc
            await self._close(sender)
        except asyncio.CancelledError:
            job.error = ViewerError("export cancelled (server stopping)")
            await self._close(sender)
            raise
        except Exception:
            log.exception("export of %s to %s failed", job.study_uid, job.destination.name)
            job.error = ViewerError("unexpected export failure")
            await self._close(sender)
        finally:
            job.stored, job.refused = sender.tally.stored, sender.tally.refused
            job.state = "failed" if job.error is not None else "done"
            if job.error is not None:
                log.warning(
                    "export of %s to %s: %s %s",
                    job.study_uid,
                    job.destination.name,
                    job.error.code,
                    job.error.detail,
                )
            audit(
                "pacs_export",
                **job.audit_fields(),
                sent=job.stored,
                refused=job.refused,
                skipped=job.skipped,
                outcome="done" if job.error is None else job.error.code,
                seconds=round(time.monotonic() - job.started, 1),
            )

    @staticmethod
    async def _close(sender: Sender) -> None:
        try:
            await sender.aclose()
        except Exception as exc:  # closing a broken connection: nothing more to do
            log.debug("closing an export connection: %r", exc)
