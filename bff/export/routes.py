"""``GET /api/download/{study_uid}``: the whole exam as a ZIP in IHE PDI layout, streamed
as it is built (DB.VI-SO.176).

Order of work: the one access function first (:func:`bff.dicomweb.routes.check_study`:
outside the grant, 404 exactly like every DICOMweb route (no session at all: 401), nothing
fetched); the study row and ALL its series from the location's PACS (QIDO; the DRIM-M KOS
series included, unlike the viewer's series list); then, series after series, one
series-level WADO-RS retrieve with the stored syntax (``transfer-syntax=*``) parsed
incrementally: each instance is written to the ZIP as soon as its part ends (re-encoded
losslessly only when stored native, in a worker thread). Memory stays flat: one instance
at a time plus about 3 KB of facts per instance for the DICOMDIR, README.TXT
and INDEX.HTM written at the end.

Once the headers are sent, a failure is logged and the connection is closed without the
final chunk (the browser reports a failed download, never a silently truncated ZIP). A
client that goes away ends the generator, which closes the upstream retrieval.

A study opened by a Consumer from a KOS (its images come from a remote Source) is not
offered for download yet: 404.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from bff.consumer.routes import remote_study
from bff.dicomweb.multipart import MultipartError, MultipartParser, parse_content_type
from bff.dicomweb.routes import UID, check_study
from bff.dicomweb.upstream import SERIES_ACCEPT, DicomwebUpstream
from bff.errors import AuthenticationRequired, BadRequest, NotFound, UpstreamProtocolError
from bff.export.pdi import PdiLayout, build_dicomdir
from bff.export.recode import prepare_instance
from bff.export.texts import index_html, readme_text, summarize
from bff.export.zipstream import ZipWriter

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


def _series_order(row: dict[str, Any]) -> tuple[int, str]:
    number = _first(row, SERIES_NUMBER)
    try:
        return int(float(number)), _first(row, SERIES_UID)
    except ValueError:
        return 1 << 30, _first(row, SERIES_UID)


def _opened_accession(request: Request, study_uid: str) -> str:
    """The accession number of the study as this session opened it (from its KOS)."""
    session = request.scope.get("session")
    for opened in getattr(session, "studies", None) or []:
        if opened.study_uid == study_uid:
            return str(opened.display.get("accession_number") or "")
    return ""


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


async def _series_instances(
    upstream: DicomwebUpstream, study_uid: str, series_uid: str, max_part_bytes: int
) -> AsyncGenerator[bytes]:
    """The instances of one series as they arrive (one series-level WADO-RS retrieve)."""
    path = f"/studies/{study_uid}/series/{series_uid}"
    async with upstream.stream(path, SERIES_ACCEPT) as (content_type, body):
        try:
            media_type, params = parse_content_type(content_type)
            if media_type != "multipart/related" or not params.get("boundary"):
                raise MultipartError(f"not multipart: {media_type}")
            parser = MultipartParser(params["boundary"], max_part_bytes=max_part_bytes)
            async for chunk in body:
                for part in parser.feed(chunk):
                    yield part.body
            parser.finalize()
        except MultipartError as exc:
            raise UpstreamProtocolError(f"series {series_uid}: {exc}") from exc


async def _zip_stream(
    upstream: DicomwebUpstream,
    study_uid: str,
    series_uids: list[str],
    max_part_bytes: int,
) -> AsyncIterator[bytes]:
    writer = ZipWriter()
    layout = PdiLayout()
    started = time.monotonic()
    complete = False
    try:
        yield writer.directory("DICOM/")  # the first bytes, at once
        for series_uid in series_uids:
            # aclosing: leaving early (client gone, failure) closes the retrieval now.
            instances = _series_instances(upstream, study_uid, series_uid, max_part_bytes)
            async with contextlib.aclosing(instances):
                async for data in instances:
                    prepared, facts = await run_in_threadpool(prepare_instance, data)
                    del data
                    header, body = writer.file(layout.add(facts), prepared)
                    yield header
                    yield body
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
            study_uid,
            len(layout.instances),
            writer.offset,
            time.monotonic() - started,
        )
    except Exception as exc:
        # Headers are sent: no error page is possible. Log, and let the exception end the
        # response without its final chunk, so the browser reports a failed download.
        log.warning(
            "download of %s failed after %d instances: %s: %s",
            study_uid,
            len(layout.instances),
            type(exc).__name__,
            exc,
        )
        raise
    finally:
        if not complete:
            log.info("download of %s stopped after %d instances", study_uid, len(layout.instances))


async def download(request: Request) -> Response:
    """The exam as a PDI ZIP, for whoever was granted it (patients and professionals)."""
    study_uid = str(request.path_params["study_uid"])
    if len(study_uid) > 64 or not UID.match(study_uid):
        raise BadRequest("bad study_uid")
    if request.scope.get("session") is None and not request.app.state.open_access:
        # No session at all (issue 7): say "sign in again", not "no such study".
        raise AuthenticationRequired("download without a session")
    upstream = check_study(request, study_uid)
    if remote_study(request, study_uid) is not None:
        raise NotFound("download of a study opened from a remote Source: not offered yet")
    studies = await upstream.get_json("/studies", {"StudyInstanceUID": study_uid})
    if not studies:
        raise NotFound("study not in the PACS")
    rows = await upstream.get_json(f"/studies/{study_uid}/series")
    series_uids = [_first(r, SERIES_UID) for r in sorted(rows, key=_series_order)]
    series_uids = [uid for uid in series_uids if uid]
    if not series_uids:
        raise NotFound("study without series")
    filename = zip_filename(studies[0], _opened_accession(request, study_uid))
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "HEAD":
        # "Is this exam downloadable here?" (the panel asks before showing its button):
        # the same checks, no retrieval. The size is not known up front (re-encoding).
        response = Response(media_type=ZIP_MEDIA_TYPE, headers=headers)
        del response.headers["content-length"]
        return response
    max_part_bytes: int = request.app.state.settings.max_part_bytes
    return ClosingStreamingResponse(
        _zip_stream(upstream, study_uid, series_uids, max_part_bytes),
        media_type=ZIP_MEDIA_TYPE,
        headers=headers,
    )


def export_routes() -> list[BaseRoute]:
    return [Route("/api/download/{study_uid}", download, methods=["GET", "HEAD"])]
