"""The global readahead budget (issue 15 item 2): every retrieval takes room from one
budget; over it, a retrieval goes on with one instance in hand. Counted, not timed: the
pool is held shut by a gate until the retrievals have filled the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bff.dicomweb.budget import ReadaheadBudget
from bff.dicomweb.cache import FrameCache
from bff.dicomweb.retrieve import Retriever
from bff.transcode import EncodeParams, TranscodedInstance
from tests.unit.test_retrieve import STUDY, RecordingPool, instance, series_upstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GatedPool(RecordingPool):
    """The recording pool, shut until ``gate`` opens (the queues fill meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def transcode(self, data: bytes, params: EncodeParams) -> TranscodedInstance:
        self.waiting += 1
        await self.gate.wait()
        return await super().transcode(data, params)


def make(pool: Any, budget: ReadaheadBudget | None) -> Retriever:
    return Retriever(
        FrameCache(10**6),
        pool,
        EncodeParams(),
        frame_timeout=5,
        max_part_bytes=10**6,
        workers=1,
        budget=budget,
    )


async def until(condition: Any) -> None:
    """Yield to the loop until ``condition()`` (bounded: a broken feature fails)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


def test_the_budget_counts_and_bounds() -> None:
    budget = ReadaheadBudget(100)
    assert budget.try_take(60)
    assert not budget.try_take(50)  # would pass 100
    budget.take(50)  # one instance in hand, whatever the budget
    assert (budget.reserved, budget.peak, budget.forced) == (110, 110, 1)
    budget.release(60)
    budget.release(50)
    assert budget.reserved == 0
    with pytest.raises(AssertionError):
        budget.release(1)
    with pytest.raises(ValueError):
        ReadaheadBudget(0)


async def _three_series(budget: ReadaheadBudget | None) -> tuple[GatedPool, int]:
    """Three series of 30 instances streamed at once against a shut pool; once every
    stream has stopped reading (budget spent) or read all, the pool opens."""
    part = len(instance("1.2.3.4.99.1"))
    pool = GatedPool()
    retriever = make(pool, budget)
    upstreams = []
    for n in range(3):
        sops = [f"1.2.3.4.{n}.{i}" for i in range(1, 31)]
        upstream, _ = series_upstream(sops)
        upstreams.append(upstream)
        retriever.ensure(upstream, STUDY, f"1.2.3.4.{n}")
    retrievals = [retriever.find("pacs-a", STUDY, f"1.2.3.4.{n}") for n in range(3)]
    assert all(r is not None for r in retrievals)
    await until(lambda: pool.waiting == 3)  # one instance of each in the (shut) pool
    if budget is not None:
        # Every retrieval holds at least one instance and none can take more room.
        await until(lambda: all(r is not None and r._pending for r in retrievals))
        await until(lambda: budget.total - budget.reserved < part)
    else:
        await until(lambda: all(r is not None and r.received == 30 for r in retrievals))
    held = sum(r.received for r in retrievals if r is not None)
    pool.gate.set()
    for r in retrievals:
        assert r is not None
        await r.done.wait()
        assert len(r.delivered) == 30  # everything arrives in the end
    for upstream in upstreams:
        await upstream.aclose()
    return pool, held


@pytest.mark.anyio
async def test_retrievals_share_one_budget_and_all_complete() -> None:
    part = len(instance("1.2.3.4.99.1"))
    budget = ReadaheadBudget(5 * part)
    _, held = await _three_series(budget)
    # Bounded: never more than the budget plus one instance per running retrieval.
    assert budget.peak <= budget.total + 3 * part
    assert budget.reserved == 0  # every byte given back
    # With the pool shut, 3 in the pool + what the budget allowed, not 90 instances.
    assert held <= 3 + 5 + 3


@pytest.mark.anyio
async def test_without_a_budget_each_retrieval_reads_its_whole_series() -> None:
    """The control: without the shared budget, the same shut pool lets every retrieval
    read all it can (its own 384 MiB bound), 90 instances held at once."""
    _, held = await _three_series(None)
    assert held == 90
