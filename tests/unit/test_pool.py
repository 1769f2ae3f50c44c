"""bff.transcode.pool: one bad instance or one dead worker never breaks transcoding."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from bff.transcode import EncodeParams, TranscodePool
from bff.transcode.errors import TranscodeFailed
from bff.transcode.pool import WORKER_NICENESS
from tests.waiting import poll


class Unpicklable(Exception):
    """An error type a worker cannot send back (like some codec errors)."""

    def __init__(self, handle: object) -> None:
        super().__init__("codec says no")
        self.handle = handle

    def __reduce__(self) -> tuple[Any, ...]:
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


def started(log: str, label: str, gate: str) -> str:
    """A job that says when it starts (one line appended to ``log``), then holds its
    worker until the test lets go of its exclusive lock on ``gate`` (a shared ``flock``
    blocks until then: an event, not a poll): the start order is the fact tested."""
    import fcntl

    with open(log, "a", encoding="utf-8") as out:
        out.write(label + "\n")
    with open(gate, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
    return label


def test_an_opening_starts_before_the_preparations_backlog(tmp_path: Path) -> None:
    """Issue 16: the preparation of published exams runs below interactive openings. With
    one worker busy on a preparation job and five more queued, an opening's job submitted
    then starts next, before the remaining preparation jobs (counted: the order in which
    the jobs started, not how long anything took)."""
    log, gate = tmp_path / "order", tmp_path / "gate"
    gate.touch()
    pool = TranscodePool(1)

    async def scenario() -> list[str]:
        with gate.open("rb") as closed:
            fcntl.flock(closed, fcntl.LOCK_EX)  # every job waits for it once started
            backlog = [
                asyncio.create_task(
                    pool.run(started, str(log), f"prepare-{i}", str(gate), background=True)
                )
                for i in range(6)
            ]
            # The first preparation job holds the only worker.
            assert await asyncio.to_thread(
                poll, lambda: log.exists() and log.read_text().split() == ["prepare-0"]
            )
            opening = asyncio.create_task(pool.run(started, str(log), "opening", str(gate)))
            await asyncio.sleep(0)  # the opening's task runs up to its first wait...
            assert pool.submitted["interactive"] == 1  # ...so it is queued before the release
        # The lock is released here: prepare-0 finishes and the queued jobs start in turn.
        await asyncio.gather(opening, *backlog)
        return log.read_text().split()

    try:
        order = asyncio.run(scenario())
    finally:
        pool.close()
    assert order[:2] == ["prepare-0", "opening"]
    assert sorted(order[2:]) == [f"prepare-{i}" for i in range(1, 6)]
    assert pool.submitted == {"interactive": 1, "background": 6}


OWNER_SCRIPT = """
import sys
from bff.transcode.pool import TranscodePool, _ping
pool = TranscodePool(1)
pool.warm_up()
pids = {pool._get_executor(urgent).submit(_ping).result() for urgent in (False, True)}
print(" ".join(map(str, sorted(pids))), flush=True)
sys.stdin.read()  # until killed
"""


def test_the_workers_end_when_the_bff_is_killed() -> None:
    """A BFF killed by SIGKILL (the OOM killer) cannot close its pool: its workers end
    with it (bff/transcode/pool.py _exit_with), instead of waiting for jobs forever, and
    the forkserver with them. Waited on as events: a pidfd of each worker."""
    import select
    import signal
    import subprocess
    import sys

    pidfds: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    ) as owner:
        try:
            assert owner.stdout is not None
            workers = [int(p) for p in owner.stdout.readline().split()]
            assert len(workers) == 2 and owner.pid not in workers
            pidfds = [os.pidfd_open(worker) for worker in workers]
            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=30)
            ended: set[int] = set()
            while len(ended) < len(pidfds):
                waiting = [fd for fd in pidfds if fd not in ended]
                readable, _, _ = select.select(waiting, [], [], 30)
                assert readable, f"workers {workers} outlived the BFF"
                ended |= set(readable)
        finally:
            for fd in pidfds:
                os.close(fd)
            if owner.poll() is None:
                owner.kill()
