"""The frame cache that lets frames arrive in one order and be asked for in another.

DB.VI-CS.17: the frames of a series reach the BFF in whatever order the PACS streams
them and are transcoded in a process pool, while OHIF requests them in its own order
(middle image first, then the ends, then every fourth ...). A frame request therefore
*waits* for its frame: :meth:`FrameCache.wait` returns at once when the frame is stored,
otherwise it waits until the series reader calls :meth:`FrameCache.put` (or
:meth:`FrameCache.fail` / :meth:`FrameCache.fail_waiters` when the stream broke).

Concurrency model: asyncio, one event loop, **not thread-safe by design**. Every method
must be called from the loop's thread; work done in threads or processes (transcoding)
hands its result back to the loop (``await loop.run_in_executor(...)``) before ``put``.

All waiters of one key share one ``asyncio.Future``; each waits on it through
``asyncio.shield`` under its own deadline, so a waiter that times out or is cancelled
(the browser went away) never cancels the others. The future is dropped as soon as its
last waiter leaves, and its exception is always marked as retrieved, so no future leaks
and asyncio never logs "Future exception was never retrieved".

Stored frames are evicted least recently used first, counted by the length of their
bytes, until the total is at most ``max_bytes``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CachedFrame", "FrameCache", "FrameKey"]


@dataclass(frozen=True)
class FrameKey:
    """One frame of one instance, on one upstream (``origin``: two PACS never mix)."""

    origin: str
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_number: int  # 1-based, as in DICOM and WADO-RS


@dataclass(frozen=True)
class CachedFrame:
    """A frame ready to serve: its bytes and their transfer syntax."""

    data: bytes
    transfer_syntax_uid: str


class _Pending:
    """The shared future of one key and how many waiters are on it."""

    __slots__ = ("future", "waiters")

    def __init__(self, future: asyncio.Future[CachedFrame]) -> None:
        self.future = future
        self.waiters = 0


def _mark_retrieved(future: asyncio.Future[CachedFrame]) -> None:
    # Called when the future completes: reading the exception stops asyncio from
    # logging it as never retrieved (e.g. when every waiter had already timed out).
    if not future.cancelled():
        future.exception()


class FrameCache:
    """An LRU cache of transcoded frames, bounded in bytes, with waiters per frame."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self._max_bytes = max_bytes
        self._entries: OrderedDict[FrameKey, CachedFrame] = OrderedDict()
        self._nbytes = 0
        self._pending: dict[FrameKey, _Pending] = {}
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    # ------------------------------------------------------------------ storage

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def nbytes(self) -> int:
        """Total length of the stored frames' data."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def put(self, key: FrameKey, frame: CachedFrame) -> None:
        """Store ``frame`` (replacing any older one) and wake every waiter of ``key``.

        A frame larger than ``max_bytes`` is handed to the current waiters but not
        stored; storing it would evict everything else and then itself.
        """
        self._remove(key)
        size = len(frame.data)
        if size <= self._max_bytes:
            self._entries[key] = frame
            self._nbytes += size
            self._evict()
        pending = self._pending.pop(key, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(frame)

    def get(self, key: FrameKey) -> CachedFrame | None:
        """The stored frame of ``key``, marked as most recently used; ``None`` if absent."""
        frame = self._entries.get(key)
        if frame is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return frame

    def discard_series(self, origin: str, study_uid: str, series_uid: str) -> None:
        """Drop the stored frames of one series (its waiters are left alone)."""
        doomed = [
            key
            for key in self._entries
            if key.origin == origin and key.study_uid == study_uid and key.series_uid == series_uid
        ]
        for key in doomed:
            self._remove(key)

    def stats(self) -> dict[str, int]:
        """Counters for logs and the status page."""
        return {
            "hits": self._hits,
            "misses": self._misses,
            "evictions": self._evictions,
            "nbytes": self._nbytes,
            "entries": len(self._entries),
            "max_bytes": self._max_bytes,
            "waited_keys": len(self._pending),
        }

    def _remove(self, key: FrameKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._nbytes -= len(old.data)

    def _evict(self) -> None:
        while self._nbytes > self._max_bytes and self._entries:
            _, frame = self._entries.popitem(last=False)
            self._nbytes -= len(frame.data)
            self._evictions += 1

    # ------------------------------------------------------------------ waiting

    async def wait(self, key: FrameKey, timeout: float) -> CachedFrame:
        """The frame of ``key``, waiting up to ``timeout`` seconds for it to be put.

        Raises the builtin ``TimeoutError`` after ``timeout``, or the exception given to
        :meth:`fail` / :meth:`fail_waiters`. Cancelling the calling task only cancels
        this waiter.
        """
        frame = self.get(key)
        if frame is not None:
            return frame
        pending = self._pending.get(key)
        if pending is None:
            future: asyncio.Future[CachedFrame] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_mark_retrieved)
            pending = self._pending[key] = _Pending(future)
        pending.waiters += 1
        try:
            # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can swallow
            # a cancellation that arrives as the future completes.
            async with asyncio.timeout(timeout):
                return await asyncio.shield(pending.future)
        finally:
            pending.waiters -= 1
            if pending.waiters == 0:
                self._forget(key, pending)

    def has_waiters(self, key: FrameKey) -> bool:
        """Whether some request is currently waiting for ``key``."""
        pending = self._pending.get(key)
        return pending is not None and pending.waiters > 0

    def fail(self, key: FrameKey, exc: BaseException) -> None:
        """Make every current waiter of ``key`` raise ``exc``."""
        pending = self._pending.pop(key, None)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(exc)

    def fail_waiters(self, predicate: Callable[[FrameKey], bool], exc: BaseException) -> int:
        """:meth:`fail` every waited key matching ``predicate``; return how many keys."""
        doomed = [key for key in self._pending if predicate(key)]
        for key in doomed:
            self.fail(key, exc)
        return len(doomed)

    def _forget(self, key: FrameKey, pending: _Pending) -> None:
        # The last waiter left: drop the future unless put/fail already replaced it.
        if self._pending.get(key) is pending:
            del self._pending[key]
        if not pending.future.done():
            pending.future.cancel()

    def __repr__(self) -> str:
        return f"<FrameCache {self.stats()}>"
