"""Series metadata asked ahead of OHIF: one mechanism, one owner, one expiry.

OHIF's first image waits for the series ``/metadata`` (FACTS 3, issue 5), and a PACS or a
Source answers it slowly while it streams that series. So it is asked before OHIF asks:

- on the Source, when a report link matches a published KOS, while the user signs in
  (never served before the grant), then turned into OHIF's answer at grant time;
- on the Consumer, at the hand-over, then turned into OHIF's answer at the opening.

Each entry, keyed by (upstream origin, study, series), holds the upstream's JSON bytes
(``raw``: a shared fetch, asked again if it failed) and, once asked for, the answer
prepared from them for one DICOMweb root and institution (``prepared``, single use). An
entry lives :data:`TTL_S` after its last use and at most :data:`MAX_ENTRIES` are kept
(the least recently used goes first): the memory is bounded whatever the users do.
The :class:`~bff.dicomweb.retrieve.Retriever` owns the one instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bff.dicomweb.series_metadata import ContextKey, PreparedMetadata
from bff.dicomweb.upstream import task_failed
from bff.errors import ViewerError

log = logging.getLogger(__name__)

#: How long an entry lives after its last use (a user chooses a profile and signs in).
TTL_S = 300.0
#: Entries kept at most (a 1300-slice CT's metadata is 5-8 MB of JSON).
MAX_ENTRIES = 64

Key = tuple[str, str, str]  # (upstream origin, study UID, series UID)


def _consume_exception(task: asyncio.Task[object]) -> None:
    """A fetch nobody ended up awaiting must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


@dataclass
class _Entry:
    raw: asyncio.Task[bytes] | None
    prepared: asyncio.Task[PreparedMetadata] | None
    expires: float


class MetadataAhead:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: Key) -> _Entry | None:
        now = self._clock()
        for stale in [k for k, e in self._entries.items() if e.expires < now]:
            del self._entries[stale]
        entry = self._entries.get(key)
        if entry is not None:
            entry.expires = now + TTL_S
            self._entries.move_to_end(key)
        return entry

    def ask(self, key: Key, fetch: Callable[[], Awaitable[bytes]]) -> asyncio.Task[bytes]:
        """The shared fetch of this series' metadata: the running or succeeded one, else
        ``fetch()`` started now."""
        entry = self._entry(key)
        if entry is not None and entry.raw is not None and not task_failed(entry.raw):
            return entry.raw
        task = asyncio.create_task(_awaited(fetch), name=f"metadata ahead {key[2]}")
        task.add_done_callback(_consume_exception)
        if entry is None:
            while len(self._entries) >= MAX_ENTRIES:
                self._entries.popitem(last=False)
            entry = self._entries[key] = _Entry(None, None, self._clock() + TTL_S)
        entry.raw = task
        return task

    def asked(self, key: Key) -> asyncio.Task[bytes] | None:
        """The fetch asked ahead, if any and not failed (kept for the next caller)."""
        entry = self._entry(key)
        if entry is None or entry.raw is None or task_failed(entry.raw):
            return None
        return entry.raw

    def take(self, key: Key) -> asyncio.Task[bytes] | None:
        """The fetch asked ahead, handed over once (its bytes are then the caller's)."""
        raw = self.asked(key)
        entry = self._entries.get(key)
        if entry is not None:
            entry.raw = None
        return raw

    def keep_prepared(self, key: Key, prepared: asyncio.Task[PreparedMetadata]) -> None:
        """Keep OHIF's answer, being prepared, for :meth:`take_prepared`."""
        prepared.add_done_callback(_consume_exception)
        entry = self._entry(key)
        if entry is None:
            while len(self._entries) >= MAX_ENTRIES:
                self._entries.popitem(last=False)
            entry = self._entries[key] = _Entry(None, None, self._clock() + TTL_S)
        entry.prepared = prepared

    def has_prepared(self, key: Key) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.prepared is not None

    async def take_prepared(self, key: Key, context_key: ContextKey) -> PreparedMetadata | None:
        """The answer prepared ahead, once, if it was built for ``context_key`` (DICOMweb
        root, institution); None when there is none or it failed (the caller builds it)."""
        entry = self._entry(key)
        if entry is None or entry.prepared is None:
            return None
        task, entry.prepared = entry.prepared, None
        try:
            prepared = await task
        except ViewerError as exc:
            log.info("prepared metadata of %s failed, asking again: %s", key[2], exc.detail)
            return None
        except ValueError as exc:  # not JSON, not an array
            log.warning("prepared metadata of %s unusable: %s", key[2], exc)
            return None
        return prepared if prepared.key == context_key else None


async def _awaited(fetch: Callable[[], Awaitable[bytes]]) -> bytes:
    return await fetch()
