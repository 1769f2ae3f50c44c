"""Series metadata as OHIF gets it: the PACS's DICOM JSON rewritten for what the BFF serves.

OHIF's first image waits for the whole series ``/metadata`` (FACTS 3): 7.8 MB of JSON
for the 1300-slice CT, which the BFF must parse, rewrite row by row
(:func:`bff.dicomweb.metadata.rewrite_instance`), serialize and compress. Done on the
request's critical path, on the event loop, that took 1-2 s on 2 cores while the same
loop was parsing the series' multipart stream (issue 5).

So the Source prepares it at grant time, while the browser is still loading OHIF
(DB.VI-SO.37: the first image within 4 s of authentication): the PACS's answer is fetched,
then parsed, rewritten, serialized and gzipped in a thread (the event loop stays free for
OHIF's boot requests), and kept as bytes on the series' retrieval. The route answers with
those bytes when they were built for the same DICOMweb root and Institution Name
(DB.VI-CS.29: taken from the KOS), else it builds the answer the same way on demand.

Rewriting is a pure function of the rows and of a snapshot of what the retrieval learnt
(:class:`SeriesFacts`), taken on the event loop, so the thread never reads live state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bff.dicomweb.metadata import rewrite_instance

log = logging.getLogger(__name__)

INSTITUTION_NAME = "00080080"
PATIENT_ID = "00100020"
ISSUER_OF_PATIENT_ID = "00100021"
ISSUER_QUALIFIERS = "00100024"
#: A private element of ours saying PatientID is the practice's local id (DB.VI-CS.32):
#: the viewport overlay shows it then (ohif-config/app-config.js), and only then.
PRIVATE_CREATOR = "00090010"
LOCAL_ID_MARK = "00091010"
LOCAL_ID_CREATOR = "DRIMBOX-VIEWER"
TRANSFER_SYNTAX = "00020010"
SERIES_UID = "0020000E"
SOP_UID = "00080018"
SERIES_DESCRIPTION = "0008103E"
#: How long the preparation waits for the first transcoded instance (for the ratio).
RATIO_WAIT_S = 1.0
#: gzip level of the prepared answer (6: the same as the on-the-fly middleware).
GZIP_LEVEL = 6
#: Above this many rows, an on-demand rewrite runs in a thread, off the event loop.
THREAD_ROWS = 64


@dataclass(frozen=True)
class SeriesFacts:
    """What a retrieval knew about a series when the rewrite started."""

    #: the PACS's stored transfer syntax, per SOP Instance UID (from the files themselves)
    stored_syntax: Mapping[str, str]
    #: compression ratio measured on the instances served lossy so far (None: none yet)
    ratio: float | None

    def syntax_of(self, sop_uid: str) -> str | None:
        return self.stored_syntax.get(sop_uid) or next(iter(self.stored_syntax.values()), None)


NO_FACTS = SeriesFacts({}, None)


#: What a prepared answer was built for: root, institution, patient id and issuer.
ContextKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class RewriteContext:
    """Everything the rewrite depends on besides the rows."""

    root: str  # the BFF's DICOMweb root as the browser sees it
    study_uid: str
    upstream_base: str
    serve: str
    codec: str
    institution: str  # from the KOS (DB.VI-CS.29); '' keeps the images' value
    #: The practice's local patient id and its issuer (Consumer, DB.VI-CS.32): they
    #: replace the Source's PatientID; '' keeps the images' value.
    patient_id: str = ""
    patient_issuer: str = ""

    @property
    def key(self) -> ContextKey:
        return (self.root, self.institution, self.patient_id, self.patient_issuer)


@dataclass(frozen=True)
class PreparedMetadata:
    """A series metadata answer, serialized and compressed once."""

    key: ContextKey
    body: bytes
    gzipped: bytes
    rows: int
    description: str


def _first(row: Mapping[str, Any], tag: str) -> str:
    return str((row.get(tag, {}).get("Value") or [""])[0])


def local_patient_id(row: dict[str, Any], patient_id: str, issuer: str) -> None:
    """DB.VI-CS.32: the practice's local id replaces the Source's PatientID, with its own
    issuer (the Source's qualifiers go: they named the Source's domain), marked as ours."""
    row[PATIENT_ID] = {"vr": "LO", "Value": [patient_id]}
    row.pop(ISSUER_QUALIFIERS, None)
    if issuer:
        row[ISSUER_OF_PATIENT_ID] = {"vr": "LO", "Value": [issuer]}
    else:
        row.pop(ISSUER_OF_PATIENT_ID, None)
    row[PRIVATE_CREATOR] = {"vr": "LO", "Value": [LOCAL_ID_CREATOR]}
    row[LOCAL_ID_MARK] = {"vr": "LO", "Value": ["LOCAL"]}


def rewrite_rows(
    rows: list[Any], context: RewriteContext, facts: Mapping[str, SeriesFacts]
) -> list[Any]:
    """Rewrite DICOM JSON instances in place (see :mod:`bff.dicomweb.metadata`);
    ``facts`` by Series Instance UID (a study's metadata spans several series)."""
    for row in rows:
        if context.institution:
            row[INSTITUTION_NAME] = {"vr": "LO", "Value": [context.institution]}
        if context.patient_id:
            local_patient_id(row, context.patient_id, context.patient_issuer)
        series_uid = _first(row, SERIES_UID)
        sop_uid = _first(row, SOP_UID)
        series = facts.get(series_uid, NO_FACTS)
        if TRANSFER_SYNTAX not in row:
            # Some PACS (Orthanc) leave group 0002 out of the metadata: use what the
            # retrieval saw in the files themselves.
            stored = series.syntax_of(sop_uid)
            if stored:
                row[TRANSFER_SYNTAX] = {"vr": "UI", "Value": [stored]}
        rewrite_instance(
            row,
            instance_url=(
                f"{context.root}/studies/{context.study_uid}/series/{series_uid}"
                f"/instances/{sop_uid}"
            ),
            upstream_base=context.upstream_base,
            ratio=series.ratio,
            serve=context.serve,
            codec=context.codec,
        )
    return rows


async def rewrite_off_loop(
    rows: list[Any], context: RewriteContext, facts: Mapping[str, SeriesFacts]
) -> list[Any]:
    """:func:`rewrite_rows`, in a thread when the answer is big."""
    if len(rows) <= THREAD_ROWS:
        return rewrite_rows(rows, context, facts)
    return await asyncio.to_thread(rewrite_rows, rows, context, facts)


def build(raw: bytes, context: RewriteContext, facts: SeriesFacts) -> PreparedMetadata:
    """The answer from the PACS's raw JSON (module level: runs in a pool worker).

    The cyclic garbage collector is paused meanwhile: parsing 1300 rows allocates some
    300 000 dicts and lists, and the collections this triggers (which free nothing: the
    rows are alive) made the parse 2-6x slower (0.12-0.36 s instead of 0.06 s for the
    1300-slice CT), on the first image's path (issue 5)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return _build(raw, context, facts)
    finally:
        if paused:
            gc.enable()


def _build(raw: bytes, context: RewriteContext, facts: SeriesFacts) -> PreparedMetadata:
    rows = json.loads(raw) if raw else []
    if not isinstance(rows, list):
        raise ValueError("series metadata is not a JSON array")
    series_uids = {_first(row, SERIES_UID) for row in rows if isinstance(row, dict)}
    rewrite_rows(rows, context, dict.fromkeys(series_uids, facts))
    body = json.dumps(rows, separators=(",", ":")).encode()
    return PreparedMetadata(
        key=context.key,
        body=body,
        gzipped=gzip.compress(body, GZIP_LEVEL, mtime=0),
        rows=len(rows),
        description=_first(rows[0], SERIES_DESCRIPTION) if rows else "",
    )


async def prepare(
    raw: asyncio.Future[bytes] | asyncio.Task[bytes],
    first_delivered: Callable[[], Awaitable[None]],
    context: RewriteContext,
    snapshot: Callable[[], SeriesFacts],
    run: Callable[..., Awaitable[PreparedMetadata]],
) -> PreparedMetadata:
    """Await the PACS's answer and (briefly) the first transcoded instance
    (``first_delivered()``, asked once the answer is in), then build the answer with
    ``run`` (the transcoding pool's: another process, so the JSON parsing and
    serializing, which hold the GIL for ~0.1 s each, never stall the event loop).
    ``snapshot()`` returns the series' :class:`SeriesFacts` (called on the event loop,
    just before)."""
    started = time.monotonic()
    body = await raw
    fetched = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(first_delivered(), RATIO_WAIT_S)
    waited = time.monotonic()
    prepared = await run(build, body, context, snapshot())
    log.info(
        "series metadata prepared: %d rows, %d B; PACS %.2f s, ratio wait %.2f s, build %.2f s",
        prepared.rows,
        len(prepared.body),
        fetched - started,
        waited - fetched,
        time.monotonic() - waited,
    )
    return prepared
