"""Series retrievals: one upstream WADO-RS stream per series, transcoded out of order.

The first need for a series (its metadata or any of its frames) starts ONE series-level
WADO-RS retrieve upstream (DB.VI-CS.17). The multipart answer is parsed incrementally;
each complete instance is queued for the transcoding pool. Workers take the instances
the viewer is waiting for first (OHIF asks for the middle slice first, the PACS sends in
its own order), then the rest in arrival order. Each transcoded frame goes into the
shared :class:`~bff.dicomweb.cache.FrameCache`, which wakes the requests waiting for it.

When the stream fails, the instances already received are still transcoded and served;
only the frames never delivered fail, with what the upstream's error policy makes of the
failure (:meth:`~bff.dicomweb.upstream.ErrorPolicy.broken_series`: a PACS's series is
incomplete, :class:`~bff.errors.IncompleteSeries`; a remote Source's keeps its Tableau 2
code).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom

from bff.dicomweb.budget import ReadaheadBudget
from bff.dicomweb.cache import CachedFrame, FrameCache, FrameKey
from bff.dicomweb.disk_cache import DiskFrameCache, entry_key
from bff.dicomweb.metadata_ahead import AnswerKey, Answers, MetadataAhead
from bff.dicomweb.multipart import Part
from bff.dicomweb.part10 import DEFLATED_SYNTAXES, file_meta, transfer_syntax
from bff.dicomweb.prepared import PreparedFrame, PreparedStore, form_of
from bff.dicomweb.series_metadata import (
    PreparedMetadata,
    RewriteContext,
    SeriesFacts,
    prepare,
)
from bff.dicomweb.series_stream import series_parts, series_path
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import (
    NotFound,
    UpstreamProtocolError,
    UpstreamTimeout,
    ViewerError,
)
from bff.transcode import EncodeParams, TranscodedInstance, TranscodePool

log = logging.getLogger(__name__)

#: A failed retrieval is remembered this long, so retries do not hammer the PACS.
FAILURE_COOLDOWN_S = 10.0
#: Longest wait of a series' stream for its metadata (SeriesRetrieval.start_after).
BULK_DELAY_S = 2.0
#: Finished retrievals remembered (their per-instance facts serve refetches and metadata).
MAX_REMEMBERED = 2000
#: How often a retrieval that yields to the series the user chose looks again (DB.VI-SO.189).
YIELD_POLL_S = 0.02


@dataclass(frozen=True)
class SeriesKey:
    origin: str
    study_uid: str
    series_uid: str
    sop_uid: str | None = None  # set for an instance-level refetch


@dataclass(frozen=True)
class InstanceFacts:
    """What the BFF learnt about an instance by transcoding it."""

    n_frames: int
    transfer_syntax_uid: str
    source_transfer_syntax_uid: str
    source_pixel_bytes: int
    served_bytes: int
    lossy: bool
    lossy_method: str | None
    attribute_overrides: dict[str, dict[str, object]] = field(default_factory=dict)


def _learn_series(retrieval: SeriesRetrieval, task: asyncio.Task[PreparedMetadata]) -> None:
    """The progress indication names the series and its size from the prepared metadata,
    before OHIF asks for it (DB.VI-CS.18)."""
    if task.cancelled() or task.exception() is not None:
        return
    prepared = task.result()
    retrieval.expected = retrieval.expected or prepared.rows
    retrieval.description = retrieval.description or prepared.description


def _consume_exception(task: asyncio.Task[Any]) -> None:
    """A prefetch nobody ended up awaiting must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


def _json_header(header: pydicom.Dataset) -> dict[str, object]:
    out: dict[str, object] = header.to_json_dict(bulk_data_threshold=256)
    meta = getattr(header, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        out["00020010"] = {"vr": "UI", "Value": [str(meta.TransferSyntaxUID)]}
    return out


def _is_instance(sop_uid: str, key: FrameKey) -> bool:
    return key.sop_uid == sop_uid


def peek_header(data: bytes) -> pydicom.Dataset:
    """The header of a Part-10 instance (file meta included), without its pixel data.

    A deflated instance is not inflated here (issue 13: pydicom would inflate the whole
    data set, unbounded, on the event loop): its header is the file meta and the
    SOP Instance and Class UIDs the file meta gives. A remote Source's policy refuses it
    (E302, not a DRIM-M syntax); a PACS's goes to the transcoding worker as before."""
    try:
        source = io.BytesIO(data)
        meta = file_meta(source)
        if transfer_syntax(meta) in DEFLATED_SYNTAXES:
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
        else:
            ds = pydicom.dcmread(source, stop_before_pixels=True)
        str(ds.SOPInstanceUID)
    except Exception as exc:  # pydicom raises many types on garbage
        raise UpstreamProtocolError(f"unreadable DICOM part: {exc}") from exc
    return ds


class SeriesRetrieval:
    """One running or finished upstream retrieval (a series, or one instance)."""

    def __init__(
        self,
        key: SeriesKey,
        upstream: DicomwebUpstream,
        cache: FrameCache,
        pool: TranscodePool,
        params: EncodeParams,
        *,
        max_part_bytes: int,
        readahead_bytes: int,
        workers: int,
        disk: DiskFrameCache | None = None,
        prepared: PreparedStore | None = None,
        budget: ReadaheadBudget | None = None,
    ) -> None:
        self.key = key
        #: shared by every retrieval (issue 15 item 2); None: this retrieval's bound only
        self._budget = budget
        self._disk = disk
        self._prepared = prepared
        self._writes: set[asyncio.Task[None]] = set()
        self._upstream = upstream
        self._cache = cache
        self._pool = pool
        self._params = dataclasses.replace(params, serve=upstream.serve)
        self._max_part_bytes = max_part_bytes
        self._readahead_bytes = readahead_bytes
        self._workers = workers
        self.delivered: dict[str, InstanceFacts] = {}
        self.received = 0
        #: Instances refused on arrival (Consumer: E301 / E302), by SOP Instance UID.
        self.refused: dict[str, ViewerError] = {}
        #: DICOM JSON headers of the instances received (a Source without /metadata).
        #: Kept as parsed (raw elements, converted only if ever needed: issue 5).
        self.headers: dict[str, pydicom.Dataset] = {}
        #: Answered from the prepared store (issue 16): no stream, no transcoding.
        self.prepared = False
        #: Instances the series should hold, when known (metadata, KOS), for progress.
        self.expected: int | None = None
        self.description = ""
        self.error: ViewerError | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.first_delivered = asyncio.Event()
        # Running totals for compression_ratio (asked once per metadata row).
        self._lossy_source_bytes = 0
        self._lossy_served_bytes = 0
        self.done = asyncio.Event()
        self._pending: OrderedDict[str, bytes] = OrderedDict()
        self._pending_bytes = 0
        self._priority: deque[str] = deque()
        self._changed = asyncio.Condition()
        self._eof = False
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False  # start_after() was called
        self._cancelled = False
        #: DB.VI-SO.189: the retrieval of the series the user chose to see first in this
        #: study, if any (set by the Retriever); this one yields the pool to it.
        self.preferred: Callable[[], SeriesRetrieval | None] = lambda: None

    # -- public -----------------------------------------------------------------------

    def start(self) -> None:
        """Start streaming from upstream (once; never after cancel())."""
        if self._task is None and not self._cancelled:
            self._task = asyncio.create_task(self._run(), name=f"retrieve {self.key}")

    def start_after(self, metadata: asyncio.Future[Any]) -> None:
        """Start streaming once ``metadata`` (the series metadata fetch) is done, or after
        BULK_DELAY_S, whichever is first: a PACS or Source answers a series' metadata
        several times slower while it streams that series (Orthanc: 0.7 s alone, 3-4 s
        while streaming the 1300-slice CT; docs/performance.md), and OHIF's first image
        waits for that metadata. A frame asked meanwhile starts it at once (ensure())."""
        self._scheduled = True
        metadata.add_done_callback(lambda _: self.start())
        asyncio.get_running_loop().call_later(BULK_DELAY_S, self.start)

    @property
    def started(self) -> bool:
        return self._task is not None

    async def first_instance(self) -> None:
        """Until the first instance is delivered (or the retrieval ends); at once when the
        stream is neither started nor due to start (start_after): a series pulled only
        when the user displays it (DB.VI-CS.05) has nothing on its way."""
        if self.started or self._scheduled:
            await self.first_delivered.wait()

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    def prioritize(self, sop_uid: str) -> None:
        """Transcode this instance next if it has arrived and waits in the queue."""
        if sop_uid in self._pending:
            self._priority.appendleft(sop_uid)

    def stored_syntax(self, sop_uid: str) -> str | None:
        """The PACS's stored syntax for an instance (else the series' first one seen)."""
        facts = self.delivered.get(sop_uid) or next(iter(self.delivered.values()), None)
        return facts.source_transfer_syntax_uid if facts else None

    def compression_ratio(self) -> float | None:
        """Source pixel bytes / served bytes over the instances served lossy so far."""
        return (
            self._lossy_source_bytes / self._lossy_served_bytes
            if self._lossy_served_bytes
            else None
        )

    def json_headers(self) -> list[dict[str, object]]:
        """DICOM JSON of the headers received (a Source without /metadata); CPU-heavy
        for a big series: call it off the event loop."""
        return [_json_header(header) for header in list(self.headers.values())]

    def facts_snapshot(self) -> SeriesFacts:
        """What the metadata rewrite needs from this retrieval, copied now (on the loop)."""
        return SeriesFacts(
            stored_syntax={
                sop_uid: facts.source_transfer_syntax_uid
                for sop_uid, facts in self.delivered.items()
            },
            ratio=self.compression_ratio(),
        )

    async def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the retrieval ------------------------------------------------------------------

    @property
    def _path(self) -> str:
        return series_path(self.key.study_uid, self.key.series_uid, self.key.sop_uid)

    def _deliver_prepared(self) -> bool:
        """A series prepared at publication (issue 16): what its preparation learnt is
        delivered at once; its frames are answered from the store (Retriever.frame), so
        nothing is streamed from the PACS and nothing is transcoded."""
        if self._prepared is None or self.key.sop_uid is not None:
            return False
        facts = self._prepared.series_facts(
            form_of(self._params), self._upstream.origin, self.key.study_uid, self.key.series_uid
        )
        if facts is None:
            return False
        for sop_uid, fact in facts.items():
            instance = InstanceFacts(
                n_frames=fact["n_frames"],
                transfer_syntax_uid=fact["transfer_syntax_uid"],
                source_transfer_syntax_uid=fact["source_transfer_syntax_uid"],
                source_pixel_bytes=fact["source_pixel_bytes"],
                served_bytes=fact["served_bytes"],
                lossy=fact["lossy"],
                lossy_method=fact["lossy_method"],
                attribute_overrides=fact["attribute_overrides"],
            )
            if instance.lossy:
                self._lossy_source_bytes += instance.source_pixel_bytes
                self._lossy_served_bytes += instance.served_bytes
            self.delivered[sop_uid] = instance
        self.received = len(facts)
        self.prepared = True
        return True

    async def _run(self) -> None:
        if self._deliver_prepared():
            self._finish()
            return
        workers = [asyncio.create_task(self._transcode_loop()) for _ in range(self._workers)]
        try:
            await self._read_stream()
        except ViewerError as exc:
            self.error = exc
            log.warning("retrieval %s failed: %s", self.key, exc.detail)
        except Exception as exc:
            self.error = ViewerError(f"unexpected: {exc!r}")
            log.exception("retrieval %s failed unexpectedly", self.key)
        finally:
            async with self._changed:
                self._eof = True
                self._changed.notify_all()
            # Instances already received are still transcoded and served.
            results = await asyncio.gather(*workers, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("transcode worker failed: %r", result)
            self._finish()

    async def _read_stream(self) -> None:
        async with series_parts(
            self._upstream, self._path, max_part_bytes=self._max_part_bytes
        ) as parts:
            async for part in parts:
                await self._enqueue(part)

    async def _enqueue(self, part: Part) -> None:
        header = peek_header(part.body)
        sop_uid = str(header.SOPInstanceUID)
        try:
            self._upstream.policy.check_part(header)
        except ViewerError as exc:
            self.received += 1
            self.refused[sop_uid] = exc
            self._cache.fail_waiters(functools.partial(_is_instance, sop_uid), exc)
            log.warning("instance %s refused: %s", sop_uid, exc.detail)
            return
        if self._upstream.keep_headers:
            self.headers[sop_uid] = header
        nbytes = len(part.body)
        while True:
            # Back-pressure: stop reading upstream while too much waits for the pool, in
            # this retrieval or (the global budget) in all of them together. With nothing
            # in hand the instance is always kept: every retrieval progresses.
            released = self._budget.next_release() if self._budget is not None else None
            async with self._changed:
                if self._admit(nbytes):
                    self._pending[sop_uid] = part.body
                    self._pending_bytes += nbytes
                    self.received += 1
                    if self._cache_has_waiter(sop_uid):
                        self._priority.appendleft(sop_uid)
                    self._changed.notify_all()
                    return
                if released is None:
                    await self._changed.wait()
                    continue
            # Every instance leaving a queue for the pool releases budget (see _dequeued).
            await released.wait()

    def _admit(self, nbytes: int) -> bool:
        """Whether an instance of ``nbytes`` may join the queue now (room taken)."""
        if not self._pending:
            if self._budget is not None:
                self._budget.take(nbytes)
            return True
        if self._pending_bytes >= self._readahead_bytes:
            return False
        return self._budget is None or self._budget.try_take(nbytes)

    def _dequeued(self, nbytes: int) -> None:
        self._pending_bytes -= nbytes
        if self._budget is not None:
            self._budget.release(nbytes)

    def _cache_has_waiter(self, sop_uid: str) -> bool:
        key = FrameKey(self._upstream.origin, self.key.study_uid, self.key.series_uid, sop_uid, 1)
        return self._cache.has_waiters(key)

    def _next_pending(self) -> tuple[str, bytes] | None:
        while self._priority:
            sop_uid = self._priority.popleft()
            if sop_uid in self._pending:
                return sop_uid, self._pending.pop(sop_uid)
        if self._pending:
            return self._pending.popitem(last=False)
        return None

    def _held(self) -> bool:
        """Wait while the chosen series of the study has instances queued (DB.VI-SO.189),
        unless a viewer waits for one of ours (a thumbnail, a series on screen)."""
        preferred = self.preferred()
        if preferred is None or preferred is self or preferred.finished:
            return False
        if not preferred._pending:
            return False
        return not any(sop_uid in self._pending for sop_uid in self._priority)

    async def _transcode_loop(self) -> None:
        while True:
            while self._held():
                await asyncio.sleep(YIELD_POLL_S)
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._pending) or self._eof)
                item = self._next_pending()
                if item is None:
                    return
                self._dequeued(len(item[1]))
                self._changed.notify_all()
            sop_uid, data = item
            try:
                result = await self._transcoded(data)
            except Exception as exc:
                log.error("transcoding %s failed: %r", sop_uid, exc)
                self._cache.fail_waiters(
                    functools.partial(_is_instance, sop_uid),
                    UpstreamProtocolError(f"transcode {sop_uid}: {exc!r}"),
                )
                continue
            self._deliver(result)

    async def _transcoded(self, data: bytes) -> TranscodedInstance:
        """The instance transcoded: from the disk cache when an earlier opening did it
        (bff/dicomweb/disk_cache.py), else by the pool (then kept on disk)."""
        if self._disk is None:
            return await self._pool.transcode(data, self._params)
        key = entry_key(data, self._params)
        cached = await self._disk.aget(key)
        if cached is not None:
            return cached
        result = await self._pool.transcode(data, self._params)
        write = asyncio.create_task(self._disk.aput(key, result))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        return result

    def _deliver(self, result: TranscodedInstance) -> None:
        origin = self._upstream.origin
        for index, frame in enumerate(result.frames, start=1):
            key = FrameKey(origin, result.study_uid, result.series_uid, result.sop_uid, index)
            self._cache.put(key, CachedFrame(frame, result.transfer_syntax_uid))
        if result.lossy and result.sop_uid not in self.delivered:
            self._lossy_source_bytes += result.source_pixel_bytes
            self._lossy_served_bytes += result.served_bytes
        self.delivered[result.sop_uid] = InstanceFacts(
            n_frames=len(result.frames),
            transfer_syntax_uid=result.transfer_syntax_uid,
            source_transfer_syntax_uid=result.source_transfer_syntax_uid,
            source_pixel_bytes=result.source_pixel_bytes,
            served_bytes=result.served_bytes,
            lossy=result.lossy,
            lossy_method=result.lossy_method,
            attribute_overrides=result.attribute_overrides,
        )
        # Frame numbers past the end of a delivered instance will never come.
        n_frames = len(result.frames)
        self._cache.fail_waiters(
            lambda k: (
                k.sop_uid == result.sop_uid
                and k.series_uid == result.series_uid
                and k.frame_number > n_frames
            ),
            NotFound(f"{result.sop_uid} has {n_frames} frames"),
        )
        self.first_delivered.set()

    def failure(self) -> ViewerError:
        """What a frame this retrieval did not deliver fails with, once it finished: the
        upstream's error policy says (a PACS's series is incomplete, E506; a remote
        Source keeps its Tableau 2 code, DB.VI-CO.27)."""
        if self.error is None:
            return NotFound(f"{self.key}: not in the series")
        return self._upstream.policy.broken_series(self.error, self.received)

    def _finish(self) -> None:
        self.finished_at = time.monotonic()
        if self._pending:  # cancelled with instances still queued: give their room back
            self._pending.clear()
            self._dequeued(self._pending_bytes)
        error = self.failure()
        delivered = self.delivered
        study_uid, series_uid = self.key.study_uid, self.key.series_uid
        origin = self._upstream.origin

        def undelivered(k: FrameKey) -> bool:
            return (
                k.origin == origin
                and k.study_uid == study_uid
                and k.series_uid == series_uid
                and (self.key.sop_uid is None or k.sop_uid == self.key.sop_uid)
                and k.sop_uid not in delivered
                and k.sop_uid not in self.refused
            )

        failed = self._cache.fail_waiters(undelivered, error)
        log.info(
            "retrieval %s finished in %.2f s: %d instances, %d waiters failed%s",
            self.key,
            self.finished_at - self.started_at,
            len(delivered),
            failed,
            f" ({self.error.code})" if self.error else "",
        )
        self.first_delivered.set()
        self.done.set()


class Retriever:
    """Starts, shares and remembers retrievals; answers frame requests from the cache."""

    def __init__(
        self,
        cache: FrameCache,
        pool: TranscodePool,
        params: EncodeParams,
        *,
        frame_timeout: float,
        max_part_bytes: int,
        workers: int,
        readahead_bytes: int = 384 * 1024**2,
        disk: DiskFrameCache | None = None,
        prepared: PreparedStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: ReadaheadBudget | None = None,
        on_frame_wait: Callable[[float], None] | None = None,
    ) -> None:
        """``clock``: what the expiry of warm_metadata()'s answers is measured with
        (tests move it). ``budget``: the readahead budget all retrievals share (issue 15
        item 2). ``on_frame_wait``: told the seconds each frame request that missed the
        cache waited (the metrics' frame wait)."""
        self.budget = budget
        self._on_frame_wait = on_frame_wait
        self.cache = cache
        self.disk = disk
        #: the served form of published exams, made at publication (issue 16)
        self.prepared = prepared
        self._forms: dict[str, str] = {}
        self._pool = pool
        self._params = params
        self._frame_timeout = frame_timeout
        self._max_part_bytes = max_part_bytes
        self._workers = workers
        self._readahead_bytes = readahead_bytes
        self._retrievals: OrderedDict[SeriesKey, SeriesRetrieval] = OrderedDict()
        #: (origin, study) -> the retrieval of the series the user chose (DB.VI-SO.189).
        self._preferred: dict[tuple[str, str], SeriesRetrieval] = {}
        #: Series metadata asked ahead of OHIF.
        self.ahead = MetadataAhead(clock=clock)
        #: OHIF's answers built from it, shared by every session of the exam.
        self.answers = Answers(clock=clock)

    def warm_metadata(self, upstream: DicomwebUpstream, study_uid: str, series_uid: str) -> None:
        """Ask the PACS for a series' metadata when a valid report link is opened, while
        the user chooses a profile and signs in (issue 5, DB.VI-SO.37): the PACS answers
        it 2-3x slower once the browser boots OHIF and the series streams. Never served:
        prefetch_metadata() takes it at the grant (bff/dicomweb/metadata_ahead.py: without
        a grant it expires). No retrieval starts before the grant. Nothing is asked for a
        series whose answer another session of the exam has built (:attr:`answers`)."""
        if self.answers.has_series((upstream.origin, study_uid, series_uid)):
            return
        self.ahead.ask(
            (upstream.origin, study_uid, series_uid),
            functools.partial(
                upstream.get_json_bytes, series_path(study_uid, series_uid) + "/metadata"
            ),
        )

    def prefetch_metadata(
        self, upstream: DicomwebUpstream, key: AnswerKey, context: RewriteContext
    ) -> SeriesRetrieval:
        """Register the series retrieval, ask the PACS for the series metadata now (or
        take what was asked while the user signed in) and build OHIF's answer from it
        (:func:`series_metadata.prepare`), so that OHIF's metadata request (its first
        image waits for it) finds it ready. The series streams once its metadata is in.
        ``key``: the answer's key (:meth:`StudyOrigin.answer_key`); one built or being
        built for another session of the exam (same scope and context) is shared: nothing
        is fetched or built again."""
        series = key[0]
        _, study_uid, series_uid = series
        retrieval = self.ensure(upstream, study_uid, series_uid, start=False)
        built = self.answers.get(key)
        if built is not None:
            self.ahead.take(series)  # what was asked while the user signed in is not needed
            retrieval.start_after(built)
            return retrieval

        def build() -> asyncio.Task[PreparedMetadata]:
            raw = self.ahead.ask(
                series,
                functools.partial(
                    upstream.get_json_bytes, series_path(study_uid, series_uid) + "/metadata"
                ),
            )
            self.ahead.take(series)  # the answer holds the bytes now; not kept twice
            retrieval.start_after(raw)
            return self.prepare_answer(retrieval, raw, context)

        self.answers.get_or_build(key, build)
        return retrieval

    def prepare_answer(
        self, retrieval: SeriesRetrieval, raw: asyncio.Future[bytes], context: RewriteContext
    ) -> asyncio.Task[PreparedMetadata]:
        """Build OHIF's metadata answer from ``raw`` (the upstream's JSON, once it comes):
        parsed, rewritten, serialized and gzipped in the pool's normal-priority worker,
        never on the event loop, after a brief wait for the first instance (what the files
        say, their transfer syntax and compression ratio, goes into the answer). Callers
        keep it in :attr:`answers` (:meth:`answer`), shared by the exam's sessions."""
        task = asyncio.create_task(
            prepare(
                raw,
                retrieval.first_instance,
                context,
                retrieval.facts_snapshot,
                functools.partial(self._pool.run, urgent=True),
            ),
            name=f"prepare metadata {retrieval.key.series_uid}",
        )
        task.add_done_callback(_consume_exception)
        task.add_done_callback(functools.partial(_learn_series, retrieval))
        return task

    def answer(
        self,
        key: AnswerKey,
        retrieval: SeriesRetrieval,
        raw: Callable[[], asyncio.Future[bytes]],
        context: RewriteContext,
    ) -> asyncio.Task[PreparedMetadata]:
        """OHIF's answer for ``key``: the one built or being built for any session of the
        exam, else built now from ``raw()`` (:meth:`prepare_answer`)."""
        return self.answers.get_or_build(
            key, lambda: self.prepare_answer(retrieval, raw(), context)
        )

    async def series_metadata_bytes(
        self, upstream: DicomwebUpstream, study_uid: str, series_uid: str
    ) -> bytes:
        """The PACS's series metadata as JSON bytes: what was asked ahead if any (once),
        else a GET."""
        self.ensure(upstream, study_uid, series_uid)
        task = self.ahead.take((upstream.origin, study_uid, series_uid))
        if task is None:
            return await upstream.get_json_bytes(series_path(study_uid, series_uid) + "/metadata")
        return await task

    def ensure(
        self,
        upstream: DicomwebUpstream,
        study_uid: str,
        series_uid: str,
        sop_uid: str | None = None,
        *,
        start: bool = True,
    ) -> SeriesRetrieval:
        """The retrieval of this series: running, succeeded, or failed recently; else a new
        one. ``start=False`` registers it without streaming yet (the next ensure() that
        starts, e.g. for a frame, starts it)."""
        key = SeriesKey(upstream.origin, study_uid, series_uid, sop_uid)
        current = self._retrievals.get(key)
        if current is not None and start:
            current.start()
        if current is not None:
            failed_long_ago = (
                current.error is not None
                and current.finished_at is not None
                and time.monotonic() - current.finished_at > FAILURE_COOLDOWN_S
            )
            # A finished instance refetch is only worth its frames, which may be gone.
            spent_refetch = sop_uid is not None and current.finished and current.error is None
            stale = failed_long_ago or spent_refetch
            if not stale:
                self._retrievals.move_to_end(key)
                return current
        retrieval = SeriesRetrieval(
            key,
            upstream,
            self.cache,
            self._pool,
            self._params,
            max_part_bytes=self._max_part_bytes,
            readahead_bytes=self._readahead_bytes,
            workers=self._workers,
            disk=self.disk,
            prepared=self.prepared,
            budget=self.budget,
        )
        if sop_uid is None:
            retrieval.preferred = functools.partial(
                self._preferred.get, (upstream.origin, study_uid)
            )
        self._retrievals[key] = retrieval
        if start:
            retrieval.start()
        while len(self._retrievals) > MAX_REMEMBERED:
            _, oldest = self._retrievals.popitem(last=False)
            if not oldest.finished:
                self._retrievals[oldest.key] = oldest  # never forget a running one
                break
        return retrieval

    def prefer(
        self, upstream: DicomwebUpstream, study_uid: str, series_uid: str
    ) -> SeriesRetrieval:
        """DB.VI-SO.189 (note 2): the user chose this series to see first. Its retrieval
        starts now if it has not; while it has instances queued, the study's other series
        leave the transcoding pool to it (except instances a viewer is waiting for)."""
        retrieval = self.ensure(upstream, study_uid, series_uid)
        for key in [k for k, r in self._preferred.items() if r.finished]:
            del self._preferred[key]
        self._preferred[(upstream.origin, study_uid)] = retrieval
        return retrieval

    def form(self, serve: str) -> str:
        """The prepared store's name of the form served by an upstream (issue 16)."""
        form = self._forms.get(serve)
        if form is None:
            form = self._forms[serve] = form_of(dataclasses.replace(self._params, serve=serve))
        return form

    def prepared_frame(
        self,
        upstream: DicomwebUpstream,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        frame_number: int,
    ) -> PreparedFrame | None:
        """The frame's whole answer when its exam was prepared at publication (issue 16),
        else None (the live path)."""
        if self.prepared is None:
            return None
        return self.prepared.frame(
            self.form(upstream.serve), upstream.origin, study_uid, series_uid, sop_uid, frame_number
        )

    def prepared_frame_count(
        self, upstream: DicomwebUpstream, study_uid: str, series_uid: str, sop_uid: str
    ) -> int | None:
        """How many frames a prepared instance has (issue 16); None when not prepared."""
        if self.prepared is None:
            return None
        form = self.form(upstream.serve)
        return self.prepared.frame_count(form, upstream.origin, study_uid, series_uid, sop_uid)

    @property
    def params(self) -> EncodeParams:
        """How lossless sources are encoded (the metadata rewrite must say the same)."""
        return self._params

    def for_study(self, origin: str, study_uid: str) -> list[SeriesRetrieval]:
        """The series retrievals of a study (for the progress indication)."""
        return [
            r
            for key, r in self._retrievals.items()
            if key.origin == origin and key.study_uid == study_uid and key.sop_uid is None
        ]

    def find(self, origin: str, study_uid: str, series_uid: str) -> SeriesRetrieval | None:
        return self._retrievals.get(SeriesKey(origin, study_uid, series_uid))

    async def frame(
        self,
        upstream: DicomwebUpstream,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        frame_number: int,
        *,
        alone: bool = False,
    ) -> CachedFrame:
        """The served frame, waiting (bounded) for it to arrive and be transcoded.
        ``alone``: unless the series is streaming already, fetch this instance only (a
        thumbnail of a series not pulled until the user displays it, DB.VI-CS.05)."""
        key = FrameKey(upstream.origin, study_uid, series_uid, sop_uid, frame_number)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        prepared = self.prepared_frame(upstream, study_uid, series_uid, sop_uid, frame_number)
        if prepared is not None:
            return CachedFrame(prepared.data, prepared.transfer_syntax_uid)
        series = self.find(upstream.origin, study_uid, series_uid)
        if alone and (series is None or not series.started):
            retrieval = self.ensure(upstream, study_uid, series_uid, sop_uid)
            if sop_uid in retrieval.refused:
                raise retrieval.refused[sop_uid]
            if retrieval.finished:  # failed moments ago
                raise retrieval_error(retrieval)
            return await self._wait(key)
        retrieval = self.ensure(upstream, study_uid, series_uid)
        if sop_uid in retrieval.refused:
            raise retrieval.refused[sop_uid]
        if retrieval.finished:
            facts = retrieval.delivered.get(sop_uid)
            if facts is None:
                raise retrieval_error(retrieval)
            if frame_number > facts.n_frames:
                raise NotFound(f"{sop_uid} has {facts.n_frames} frames")
            # Delivered then evicted from the cache: fetch that one instance again.
            retrieval = self.ensure(upstream, study_uid, series_uid, sop_uid)
            if retrieval.finished:  # a refetch that failed moments ago
                raise retrieval_error(retrieval)
        else:
            retrieval.prioritize(sop_uid)
        return await self._wait(key)

    async def _wait(self, key: FrameKey) -> CachedFrame:
        started = time.monotonic()
        try:
            return await self.cache.wait(key, self._frame_timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"frame {key} not ready in {self._frame_timeout} s") from exc
        finally:
            if self._on_frame_wait is not None:
                self._on_frame_wait(time.monotonic() - started)

    async def aclose(self) -> None:
        for retrieval in list(self._retrievals.values()):
            await retrieval.cancel()
        self._retrievals.clear()


def retrieval_error(retrieval: SeriesRetrieval) -> ViewerError:
    return retrieval.failure()
