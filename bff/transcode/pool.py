"""The process pool that runs :func:`transcode_instance` off the event loop.

The only module that knows about processes. Workers are started with 'forkserver' (or
'spawn' where there is none), never 'fork': the app runs an asyncio loop with threads,
and a forked child would inherit their locks. Decoding and encoding are CPU-bound and the
pydicom steps hold the GIL, so processes beat threads (FACTS 4).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from bff.transcode.errors import TranscodeError, TranscodeFailed
from bff.transcode.instance import transcode_instance
from bff.transcode.model import EncodeParams, TranscodedInstance

logger = logging.getLogger(__name__)
T = TypeVar("T")


#: Transcoding is throughput work: it yields the CPU to the event loop (metadata, the
#: first frames) and, on a shared machine, to the browser (docs/performance.md).
WORKER_NICENESS = 19


def _exit_with(owner: int) -> None:
    """End this worker when the process that owns the pool (``owner``) ends, however it
    ends: a BFF killed by SIGKILL (the OOM killer, ``kill -9``) cannot shut its pool down,
    and its workers, children of the forkserver and holding its pipes, would otherwise wait
    for jobs forever (and keep the forkserver alive): a supervisor restarting the BFF
    outside a cgroup that dies with it would leak two processes per crash. A daemon
    thread waits on a pidfd of the owner (Linux >= 5.3: an event, no polling)."""
    import select
    import threading

    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:  # gone already
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here: the pool's close() or the cgroup
        return

    def wait() -> None:
        select.select([pidfd], [], [])
        os._exit(0)  # no cleanup to run: the owner is gone, its jobs with it

    threading.Thread(target=wait, name="pool-owner-watch", daemon=True).start()


def _worker_init(niceness: int = WORKER_NICENESS, owner: int | None = None) -> None:
    """Lower the worker's priority; end with the pool's ``owner`` (:func:`_exit_with`);
    import the codecs once so the first instance is not slower."""
    import imagecodecs

    os.nice(niceness)
    if owner is not None:
        _exit_with(owner)
    import bff.transcode.registry  # noqa: F401

    for codec in ("HTJ2K", "JPEGLS", "JPEG8", "JPEG2K", "PACKBITS"):
        getattr(imagecodecs, codec)  # imagecodecs loads its extensions lazily


def _transcode_in_worker(data: bytes, params: EncodeParams) -> TranscodedInstance:
    try:
        return transcode_instance(data, params)
    except TranscodeError:
        raise  # ours pickle (bff.transcode.errors): the caller maps them
    except Exception as exc:
        raise TranscodeFailed(f"{type(exc).__name__}: {exc}") from None


def _ping() -> int:
    import os

    return os.getpid()


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class TranscodePool:
    """``workers`` niced processes for the throughput work (transcoding), plus one process
    at normal priority for urgent work the first image waits for (the series metadata,
    bff.dicomweb.series_metadata): queued behind transcoding jobs, at low priority against
    the browser's boot on a 2-core machine, that build took 1-2 s instead of 0.3 s.

    Background work (the preparation of a published exam, issue 16) goes through a lane
    below the viewers' openings: a background job is handed to the workers only while no
    interactive job is waiting or running, and never more than ``workers`` at once, so an
    opening's instance waits at most for the background jobs already running, never for
    the preparation's backlog (the executor's queue is first in, first out)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        #: jobs submitted and not finished: queued or running (the metrics' queue depth)
        self.jobs = 0
        self._executors: dict[bool, ProcessPoolExecutor] = {}
        self._closed = False
        #: interactive jobs handed to the workers and not done; background jobs running
        self._interactive = 0
        self._background = 0
        self._lane: asyncio.Condition | None = None
        self._lane_loop: asyncio.AbstractEventLoop | None = None
        #: jobs handed to the workers since the start, by lane (metrics, tests)
        self.submitted = {"interactive": 0, "background": 0}

    def _get_executor(self, urgent: bool = False) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("TranscodePool is closed")
        executor = self._executors.get(urgent)
        if executor is None:
            executor = self._executors[urgent] = ProcessPoolExecutor(
                max_workers=1 if urgent else self.workers,
                mp_context=_context(),
                initializer=_worker_init,
                initargs=(0 if urgent else WORKER_NICENESS, os.getpid()),
            )
        return executor

    async def transcode(
        self, data: bytes, params: EncodeParams, *, background: bool = False
    ) -> TranscodedInstance:
        """Run :func:`transcode_instance` in a worker; its errors are re-raised here.
        ``background``: in the lane below interactive work (preparation, issue 16)."""
        return await self.run(_transcode_in_worker, data, params, background=background)

    def _condition(self) -> asyncio.Condition:
        """The lane's condition, of the running loop (a pool may outlive a test's loop)."""
        loop = asyncio.get_running_loop()
        if self._lane is None or self._lane_loop is not loop:
            self._lane, self._lane_loop = asyncio.Condition(), loop
        return self._lane

    async def run(
        self,
        function: Callable[..., T],
        *args: object,
        urgent: bool = False,
        background: bool = False,
    ) -> T:
        """Run a module-level function in a worker (``urgent``: in the normal-priority
        one, ahead of any transcoding; ``background``: in the throughput workers, only
        while no interactive job waits or runs). A worker that dies (a crash in a codec,
        the OOM killer) breaks its executor: this call fails, and the next one gets a
        fresh pool rather than failing forever."""
        if urgent:
            return await self._submit(function, args, urgent=True)
        lane = self._condition()
        if background:
            async with lane:
                await lane.wait_for(
                    lambda: self._interactive == 0 and self._background < self.workers
                )
                self._background += 1
        else:
            self._interactive += 1
        self.submitted["background" if background else "interactive"] += 1
        try:
            return await self._submit(function, args, urgent=False)
        finally:
            async with lane:
                if background:
                    self._background -= 1
                else:
                    self._interactive -= 1
                lane.notify_all()

    async def _submit(
        self, function: Callable[..., T], args: tuple[object, ...], *, urgent: bool
    ) -> T:
        loop = asyncio.get_running_loop()
        executor = self._get_executor(urgent)
        self.jobs += 1
        try:
            return await loop.run_in_executor(executor, function, *args)
        except BrokenProcessPool as exc:
            logger.error("transcoding worker died (%s): starting a fresh pool", exc)
            if self._executors.get(urgent) is executor:
                del self._executors[urgent]
                executor.shutdown(wait=False, cancel_futures=True)
            raise TranscodeFailed(f"worker died: {exc}") from None
        finally:
            self.jobs -= 1

    @property
    def closed(self) -> bool:
        return self._closed

    async def ping(self) -> None:
        """A no-op job through the normal-priority worker (readiness: the pool answers)."""
        await self.run(_ping, urgent=True)

    def warm_up(self) -> None:
        """Start every worker now (blocking, a second or so) rather than on first use."""
        executor = self._get_executor()
        futures = [executor.submit(_ping) for _ in range(self.workers)]
        futures.append(self._get_executor(urgent=True).submit(_ping))
        for future in futures:
            future.result()
        logger.info("transcoding pool ready: %d worker processes + 1 urgent", self.workers)

    def close(self) -> None:
        """Stop the workers; pending work is cancelled. Idempotent."""
        self._closed = True
        executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
