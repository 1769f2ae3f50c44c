"""Series metadata asked ahead of OHIF: one mechanism, one owner, one expiry.

OHIF's first image waits for the series ``/metadata`` (FACTS 3, issue 5), and a PACS or a
Source answers it slowly while it streams that series. So it is asked before OHIF asks:

- on the Source, when a report link matches a published KOS, while the user signs in
  (never served before the grant), then turned into OHIF's answer at grant time;
- on the Consumer, at the hand-over, then turned into OHIF's answer at the opening.

Each entry, keyed by (upstream origin, study, series), holds the upstream's JSON bytes
(``raw``: a shared fetch, asked again if it failed). An entry lives :data:`TTL_S` after
its last use and at most :data:`MAX_ENTRIES` are kept (the least recently used goes
first).

OHIF's answers built from them (:class:`Answers`) are shared by every session of the
exam (issue 16, the load benchmark): keyed by (origin, study, series), the scope of the
grant (:meth:`~bff.origins.base.StudyOrigin.answer_scope`) and the rewrite context (the
DICOMweb root, the institution, the practice's patient id), built once (concurrent
askers share the build in flight) and kept :data:`TTL_S` after their last use, within
:data:`MAX_ANSWER_BYTES` (least recently used first). Each session's access is checked
before it is answered (the facade's study_origin()): sharing a built answer only saves
the PACS fetch and the build, it opens nothing. Before, each grant fetched and built its
own answer, used once: 20 viewers opening one exam fetched its 6.5 MB of metadata 20
times and queued 20 builds in the pool (docs/performance.md, round 5).

Memory is bounded whatever the users do. The :class:`~bff.dicomweb.retrieve.Retriever`
owns the one instance of each.
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
#: Bytes of built answers kept at most (the body and its gzip: a 1300-slice CT's is about
#: 7 MB; in-flight builds count once they are done).
MAX_ANSWER_BYTES = 96 * 1024 * 1024

Key = tuple[str, str, str]  # (upstream origin, study UID, series UID)
#: (origin, study, series), the grant's scope, the rewrite context
AnswerKey = tuple[Key, str, ContextKey]


def _consume_exception(task: asyncio.Task[object]) -> None:
    """A fetch nobody ended up awaiting must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


@dataclass
class _Entry:
    raw: asyncio.Task[bytes] | None
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
            entry = self._entries[key] = _Entry(None, self._clock() + TTL_S)
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


@dataclass
class _Answer:
    task: asyncio.Task[PreparedMetadata]
    expires: float
    nbytes: int = 0


class Answers:
    """OHIF's series metadata answers, built once and shared by every session of the exam
    (see the module's docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._answers: OrderedDict[AnswerKey, _Answer] = OrderedDict()
        self.nbytes = 0
        #: answers built (each build fetched its raw metadata and ran in the pool)
        self.builds = 0
        #: asks answered with one built or being built for an earlier ask (the grant's
        #: prefetch, another session of the exam)
        self.reused = 0

    def __len__(self) -> int:
        return len(self._answers)

    def _drop(self, key: AnswerKey) -> None:
        answer = self._answers.pop(key, None)
        if answer is not None:
            self.nbytes -= answer.nbytes

    def _live(self, key: AnswerKey) -> _Answer | None:
        now = self._clock()
        for stale in [k for k, a in self._answers.items() if a.expires < now]:
            self._drop(stale)
        answer = self._answers.get(key)
        if answer is None:
            return None
        if task_failed(answer.task):
            self._drop(key)  # a failed build is built again by the next asker
            return None
        answer.expires = now + TTL_S
        self._answers.move_to_end(key)
        return answer

    def has_series(self, series: Key) -> bool:
        """Whether an answer of this series is built or being built (any scope, context)."""
        return any(key[0] == series for key in self._answers)

    def get(self, key: AnswerKey) -> asyncio.Task[PreparedMetadata] | None:
        """The answer built or being built for ``key``, if any and not failed."""
        answer = self._live(key)
        return None if answer is None else answer.task

    def get_or_build(
        self, key: AnswerKey, build: Callable[[], asyncio.Task[PreparedMetadata]]
    ) -> asyncio.Task[PreparedMetadata]:
        """The answer for ``key``: the one built or being built (shared), else ``build()``
        started now and kept."""
        answer = self._live(key)
        if answer is not None:
            self.reused += 1
            return answer.task
        task = build()
        task.add_done_callback(_consume_exception)
        self.builds += 1
        self._answers[key] = _Answer(task, self._clock() + TTL_S)
        task.add_done_callback(lambda done: self._built(key, done))
        while len(self._answers) > MAX_ENTRIES:
            self._drop(next(iter(self._answers)))
        return task

    def _built(self, key: AnswerKey, task: asyncio.Task[PreparedMetadata]) -> None:
        answer = self._answers.get(key)
        if answer is None or answer.task is not task or task_failed(task):
            return
        prepared = task.result()
        answer.nbytes = len(prepared.body) + len(prepared.gzipped)
        self.nbytes += answer.nbytes
        while self.nbytes > self._max_bytes and self._answers:
            self._drop(next(iter(self._answers)))  # least recently used first, maybe this one

    async def answer(self, key: AnswerKey) -> PreparedMetadata | None:
        """The answer built for ``key``, awaited; None when there is none or its build
        failed (the caller builds it again)."""
        task = self.get(key)
        if task is None:
            return None
        self.reused += 1
        try:
            return await asyncio.shield(task)  # one asker leaving does not cancel the build
        except ViewerError as exc:
            log.info("prepared metadata of %s failed, asking again: %s", key[0][2], exc.detail)
        except ValueError as exc:  # not JSON, not an array
            log.warning("prepared metadata of %s unusable: %s", key[0][2], exc)
        if self._answers.get(key) is not None and self._answers[key].task is task:
            self._drop(key)
        return None


async def _awaited(fetch: Callable[[], Awaitable[bytes]]) -> bytes:
    return await fetch()
