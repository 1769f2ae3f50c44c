"""bff.transcode.pool: one bad instance or one dead worker never breaks transcoding."""

from __future__ import annotations

import asyncio
import os

import pytest

from bff.transcode import EncodeParams, TranscodePool
from bff.transcode.pool import WORKER_NICENESS, TranscodeFailed


class Unpicklable(Exception):
    """An error type a worker cannot send back (like some codec errors)."""

    def __init__(self, handle: object) -> None:
        super().__init__("codec says no")
        self.handle = handle

    def __reduce__(self) -> object:
        raise TypeError("cannot pickle")


def die() -> int:
    os._exit(3)  # a crash in native code, the OOM killer


def raise_unpicklable() -> int:
    raise Unpicklable(lambda: None)


def pid() -> int:
    return os.getpid()


def test_a_dead_worker_fails_its_job_and_the_pool_recovers() -> None:
    pool = TranscodePool(1)

    async def scenario() -> None:
        first = await pool.run(pid)
        with pytest.raises(TranscodeFailed, match="worker died"):
            await pool.run(die)
        assert await pool.run(pid) != first  # a fresh worker
        # An error a worker cannot pickle does not break the pool either.
        with pytest.raises(Exception):  # noqa: B017 - the executor's own wrapping
            await pool.run(raise_unpicklable)
        assert isinstance(await pool.run(pid), int)

    try:
        asyncio.run(scenario())
    finally:
        pool.close()


def test_worker_errors_come_back_as_picklable_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs in the worker: a codec's own (unpicklable) error becomes TranscodeFailed
    with its text; transcoding's own errors (which pickle) pass unchanged."""
    import pickle

    from bff.transcode import pool as pool_module
    from bff.transcode.errors import CorruptPixelData

    def codec_fails(data: bytes, params: EncodeParams) -> object:
        raise Unpicklable(object())

    monkeypatch.setattr(pool_module, "transcode_instance", codec_fails)
    with pytest.raises(TranscodeFailed, match="Unpicklable: codec says no") as caught:
        pool_module._transcode_in_worker(b"", EncodeParams())
    assert isinstance(pickle.loads(pickle.dumps(caught.value)), TranscodeFailed)

    def ours(data: bytes, params: EncodeParams) -> object:
        raise CorruptPixelData("unreadable DICOM instance")

    monkeypatch.setattr(pool_module, "transcode_instance", ours)
    with pytest.raises(CorruptPixelData):
        pool_module._transcode_in_worker(b"", EncodeParams())


def niceness() -> int:
    return os.nice(0)


def test_urgent_work_runs_at_normal_priority_beside_the_niced_transcoders() -> None:
    """Issue 5: the series metadata the first image waits for is built in a process of
    normal priority, not queued behind transcoding in the niced workers."""
    pool = TranscodePool(2)

    async def scenario() -> None:
        bulk_nice = await pool.run(niceness)
        urgent_nice = await pool.run(niceness, urgent=True)
        assert bulk_nice - urgent_nice == WORKER_NICENESS
        assert await pool.run(pid, urgent=True) != await pool.run(pid)

    try:
        asyncio.run(scenario())
    finally:
        pool.close()
