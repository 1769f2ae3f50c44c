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
from concurrent.futures import ProcessPoolExecutor

from bff.transcode.instance import transcode_instance
from bff.transcode.model import EncodeParams, TranscodedInstance

logger = logging.getLogger(__name__)


#: Transcoding is throughput work: it yields the CPU to the event loop (metadata, the
#: first frames) and, on a shared machine, to the browser (docs/performance.md).
WORKER_NICENESS = 10


def _worker_init() -> None:
    """Lower the worker's priority; import the codecs once so the first instance is not
    slower."""
    import os

    import imagecodecs

    os.nice(WORKER_NICENESS)
    import bff.transcode.registry  # noqa: F401

    for codec in ("HTJ2K", "JPEGLS", "JPEG8", "JPEG2K", "PACKBITS"):
        getattr(imagecodecs, codec)  # imagecodecs loads its extensions lazily


def _ping() -> int:
    import os

    return os.getpid()


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class TranscodePool:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _get_executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("TranscodePool is closed")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_context(), initializer=_worker_init
            )
        return self._executor

    async def transcode(self, data: bytes, params: EncodeParams) -> TranscodedInstance:
        """Run :func:`transcode_instance` in a worker; its errors are re-raised here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._get_executor(), transcode_instance, data, params)

    def warm_up(self) -> None:
        """Start every worker now (blocking, a second or so) rather than on first use."""
        executor = self._get_executor()
        for future in [executor.submit(_ping) for _ in range(self.workers)]:
            future.result()
        logger.info("transcoding pool ready: %d worker processes", self.workers)

    def close(self) -> None:
        """Stop the workers; pending work is cancelled. Idempotent."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
