"""``GET /api/download/{study_uid}``: the whole exam as a ZIP in IHE PDI layout, streamed
as it is built (DB.VI-SO.176).

Order of work: the one access decision first (:func:`bff.facade.routes.study_origin`:
outside the grant, 404 exactly like every DICOMweb route (no session at all: 401), nothing
fetched), which gives the study's origin; its export plan (the location's PACS: the study
row and ALL its series, the DRIM-M KOS series included, unlike the viewer's series list;
a remote Source on the Consumer: the KOS's series, and the KOS itself as received); then,
series after series, one series-level WADO-RS retrieve of the stored syntax (the origin's
series stream, :mod:`bff.dicomweb.series_stream`) parsed incrementally: each instance is
written to the ZIP as soon as its part ends (re-encoded
losslessly only when stored native, in a worker thread). Memory stays flat: one instance
at a time plus about 3 KB of facts per instance for the DICOMDIR, README.TXT
and INDEX.HTM written at the end.

Once the headers are sent, a failure is logged and the connection is closed without the
final chunk (the browser reports a failed download, never a silently truncated ZIP). A
client that goes away ends the generator, which closes the upstream retrieval.

A study opened on the Consumer from a KOS (issue 12) downloads the same way, pulled
from its remote Source through the same origin: same layout, lossless rule, streaming.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from bff.audit import audit
from bff.errors import AuthenticationRequired
from bff.export.pdi import PdiLayout, build_dicomdir
from bff.export.recode import prepare_instance
from bff.export.texts import index_html, readme_text, summarize
from bff.export.zipstream import ZipWriter
from bff.origins.base import ExportPlan, StudyOrigin
from bff.services import location_of, services_of, study_origin, uid_param

log = logging.getLogger(__name__)

ZIP_MEDIA_TYPE = "application/zip"
SERIES_NUMBER = "00200011"
SERIES_UID = "0020000E"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _first(row: dict[str, Any], tag: str) -> str:
    return str((row.get(tag, {}).get("Value") or [""])[0])


def zip_filename(study_row: dict[str, Any], accession_number: str = "") -> str:
    """``examen-<date>-<accession>.zip`` (ASCII letters, digits, '.', '_' and '-' only).
    ``accession_number``: the one the study was opened with (the KOS archive), which
    wins over the PACS's study row (a DRIM-M KOS has an empty top-level accession, and
    some PACS then show it at study level)."""
    accession = accession_number or _first(study_row, "00080050")
    parts = ["examen", _first(study_row, "00080020"), accession]
    cleaned = [_SAFE.sub("_", p).strip("._") for p in parts]
    return "-".join(p for p in cleaned if p)[:100] + ".zip"


def _opened_accession(request: Request, study_uid: str) -> str:
    """The accession number of the study as this session opened it (from its KOS)."""
    session = request.scope.get("session")
    for opened in session.studies if session is not None else ():
        if opened.study_uid == study_uid:
            return str(opened.display.get("accession_number") or "")
    return ""


async def _entry(writer: ZipWriter, layout: PdiLayout, data: bytes) -> tuple[bytes, bytes]:
    """One instance as a ZIP entry (re-encoded losslessly when stored native)."""
    prepared, facts = await run_in_threadpool(prepare_instance, data)
    return writer.file(layout.add(facts), prepared)


class ClosingStreamingResponse(StreamingResponse):
    """Always closes its generator: when the client goes away, Starlette stops iterating
    but leaves the generator suspended; closing it runs its ``finally`` (and so closes
    the upstream retrieval) now rather than whenever it is garbage collected."""

    def __init__(self, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._generator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self._generator, "aclose", None)
            if aclose is not None:
                await aclose()


async def _zip_stream(origin: StudyOrigin, plan: ExportPlan) -> AsyncIterator[bytes]:
    writer = ZipWriter()
    layout = PdiLayout()
    started = time.monotonic()
    complete = False
    try:
        yield writer.directory("DICOM/")  # the first bytes, at once
        for series_uid in plan.series_uids:
            # Leaving early (client gone, failure) closes the retrieval now.
            async with origin.stream_series(series_uid) as parts:
                async for part in parts:
                    for chunk in await _entry(writer, layout, part.body):
                        yield chunk
        for data in plan.extra:
            for chunk in await _entry(writer, layout, data):
                yield chunk
        dicomdir = await run_in_threadpool(build_dicomdir, layout)
        summary = summarize(layout)
        for name, content in (
            ("DICOMDIR", dicomdir),
            ("README.TXT", readme_text(summary)),
            ("INDEX.HTM", index_html(summary)),
        ):
            yield b"".join(writer.file(name, content))
        yield writer.finish()
        complete = True
        log.info(
            "download of %s: %d instances, %d bytes, %.1f s",
            origin.study_uid,
            len(layout.instances),
            writer.offset,
            time.monotonic() - started,
        )
    except Exception as exc:
        # Headers are sent: no error page is possible. Log, and let the exception end the
        # response without its final chunk, so the browser reports a failed download.
        log.warning(
            "download of %s failed after %d instances: %s: %s",
            origin.study_uid,
            len(layout.instances),
            type(exc).__name__,
            exc,
        )
        raise
    finally:
        if not complete:
            log.info(
                "download of %s stopped after %d instances", origin.study_uid, len(layout.instances)
            )


async def download(request: Request) -> Response:
    """The exam as a PDI ZIP, for whoever was granted it (patients and professionals)."""
    study_uid = uid_param(request, "study_uid")
    if request.scope.get("session") is None and not services_of(request).open_access:
        # No session at all (issue 7): say "sign in again", not "no such study".
        raise AuthenticationRequired("download without a session")
    origin = await study_origin(request, study_uid)
    plan = await origin.export_plan()
    filename = zip_filename(plan.study_row, _opened_accession(request, study_uid))
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "GET":
        audit("study_downloaded", study_uid=study_uid, location=location_of(request))
    if request.method == "HEAD":
        # "Is this exam downloadable here?" (the panel asks before showing its button):
        # the same checks, no retrieval. The size is not known up front (re-encoding).
        response = Response(media_type=ZIP_MEDIA_TYPE, headers=headers)
        del response.headers["content-length"]
        return response
    return ClosingStreamingResponse(
        _zip_stream(origin, plan),
        media_type=ZIP_MEDIA_TYPE,
        headers=headers,
    )


def export_routes() -> list[BaseRoute]:
    return [Route("/api/download/{study_uid}", download, methods=["GET", "HEAD"])]
