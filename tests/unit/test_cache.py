"""The out-of-order frame cache (DB.VI-CS.17): frames arrive in the PACS's order and are
asked for in OHIF's order; a request waits for its frame."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bff.dicomweb.cache import CachedFrame, FrameCache, FrameKey

TS = "1.2.840.10008.1.2.4.201"  # HTJ2K


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def key(frame_number: int, *, origin: str = "pacs-a", series_uid: str = "1.2.3.2") -> FrameKey:
    return FrameKey(origin, "1.2.3", series_uid, f"1.2.3.2.{frame_number}", frame_number)


def frame(data: bytes | int) -> CachedFrame:
    return CachedFrame(data if isinstance(data, bytes) else bytes([data % 256]) * 10, TS)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- storage


def test_get_put_and_lru_eviction_by_bytes() -> None:
    cache = FrameCache(max_bytes=30)
    for n in (1, 2, 3):
        cache.put(key(n), frame(n))
    assert (len(cache), cache.nbytes) == (3, 30)
    assert cache.get(key(1)) == frame(1)  # 1 becomes the most recently used
    cache.put(key(4), frame(4))  # evicts 2, the least recently used
    assert cache.get(key(2)) is None
    assert [cache.get(key(n)) for n in (1, 3, 4)] == [frame(1), frame(3), frame(4)]
    assert cache.nbytes == 30
    cache.put(key(5), frame(b"x" * 25))  # needs room for 25 bytes: evicts 1 and 3, then 4
    assert [n for n in (1, 3, 4, 5) if cache.get(key(n))] == [5]
    assert cache.nbytes == 25
    stats = cache.stats()
    assert stats["evictions"] == 4
    assert (stats["nbytes"], stats["entries"]) == (25, 1)
    assert stats["hits"] >= 4 and stats["misses"] >= 4


def test_put_replaces_without_double_counting() -> None:
    cache = FrameCache(max_bytes=100)
    cache.put(key(1), frame(b"a" * 40))
    cache.put(key(1), frame(b"b" * 10))
    assert (len(cache), cache.nbytes) == (1, 10)
    assert cache.get(key(1)) == frame(b"b" * 10)


def test_origins_never_mix() -> None:
    cache = FrameCache(max_bytes=100)
    cache.put(key(1, origin="pacs-a"), frame(b"A"))
    assert cache.get(key(1, origin="pacs-b")) is None
    cache.put(key(1, origin="pacs-b"), frame(b"B"))
    assert cache.get(key(1, origin="pacs-a")) == frame(b"A")
    assert cache.get(key(1, origin="pacs-b")) == frame(b"B")


def test_discard_series() -> None:
    cache = FrameCache(max_bytes=1000)
    for n in (1, 2):
        cache.put(key(n), frame(n))
        cache.put(key(n, series_uid="other"), frame(n))
        cache.put(key(n, origin="pacs-b"), frame(n))
    cache.discard_series("pacs-a", "1.2.3", "1.2.3.2")
    assert (len(cache), cache.nbytes) == (4, 40)
    assert cache.get(key(1)) is None
    assert cache.get(key(1, series_uid="other")) is not None
    assert cache.get(key(1, origin="pacs-b")) is not None


# --------------------------------------------------------------------------- waiting


@pytest.mark.anyio
async def test_out_of_order_arrival() -> None:
    cache = FrameCache(max_bytes=1000)
    waiters = {n: asyncio.create_task(cache.wait(key(n), timeout=5)) for n in (5, 1, 9)}
    await settle()
    assert all(cache.has_waiters(key(n)) for n in (5, 1, 9))
    for n in (9, 1, 5):
        cache.put(key(n), frame(n))
        await settle()
        assert waiters[n].done()
    assert {n: await task for n, task in waiters.items()} == {n: frame(n) for n in (5, 1, 9)}
    assert cache.stats()["waited_keys"] == 0


@pytest.mark.anyio
async def test_present_frame_is_returned_at_once() -> None:
    cache = FrameCache(max_bytes=1000)
    cache.put(key(1), frame(1))
    assert await cache.wait(key(1), timeout=0) == frame(1)
    assert not cache.has_waiters(key(1))


@pytest.mark.anyio
async def test_many_waiters_share_one_future() -> None:
    cache = FrameCache(max_bytes=1000)
    tasks = [asyncio.create_task(cache.wait(key(1), timeout=5)) for _ in range(100)]
    await settle()
    pending = cache._pending  # white box: one shared future for the key
    assert list(pending) == [key(1)] and pending[key(1)].waiters == 100
    cache.put(key(1), frame(1))
    assert await asyncio.gather(*tasks) == [frame(1)] * 100
    assert cache._pending == {}


@pytest.mark.anyio
async def test_timeout_and_cancel_do_not_affect_other_waiters() -> None:
    cache = FrameCache(max_bytes=1000)
    patient = asyncio.create_task(cache.wait(key(1), timeout=5))
    hasty = asyncio.create_task(cache.wait(key(1), timeout=0.01))
    doomed = asyncio.create_task(cache.wait(key(1), timeout=5))
    await settle()
    with pytest.raises(TimeoutError):
        await hasty
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert cache.has_waiters(key(1)) and not patient.done()
    cache.put(key(1), frame(1))
    assert await patient == frame(1)


@pytest.mark.anyio
async def test_timeout_is_bounded_and_cleans_up() -> None:
    cache = FrameCache(max_bytes=1000)
    waiter = asyncio.create_task(cache.wait(key(1), timeout=0.05))
    # Bounded: the waiter ends by itself, on its own timeout, while nothing is ever put.
    # (The deadline here only keeps a broken timeout from hanging the suite.)
    done, _ = await asyncio.wait({waiter}, timeout=30)
    if waiter not in done:
        waiter.cancel()
    assert waiter in done, "the wait outlived its timeout"
    with pytest.raises(TimeoutError):
        await waiter
    assert not cache.has_waiters(key(1))
    assert cache._pending == {}
    # A frame that arrives after everybody left is simply stored.
    cache.put(key(1), frame(1))
    assert cache.get(key(1)) == frame(1)


@pytest.mark.anyio
async def test_cancelled_last_waiter_leaves_no_future() -> None:
    cache = FrameCache(max_bytes=1000)
    tasks = [asyncio.create_task(cache.wait(key(n), timeout=5)) for n in range(10)]
    await settle()
    assert cache.stats()["waited_keys"] == 10
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert cache._pending == {}
    assert cache.stats()["waited_keys"] == 0


@pytest.mark.anyio
async def test_oversized_frame_is_delivered_but_not_stored() -> None:
    cache = FrameCache(max_bytes=10)
    cache.put(key(2), frame(b"s" * 5))
    waiter = asyncio.create_task(cache.wait(key(1), timeout=5))
    await settle()
    big = frame(b"B" * 11)
    cache.put(key(1), big)
    assert await waiter == big
    assert cache.get(key(1)) is None
    assert cache.get(key(2)) == frame(b"s" * 5)  # nothing evicted for it
    assert (len(cache), cache.nbytes) == (1, 5)


@pytest.mark.anyio
async def test_fail_raises_in_every_waiter() -> None:
    cache = FrameCache(max_bytes=1000)
    tasks = [asyncio.create_task(cache.wait(key(1), timeout=5)) for _ in range(3)]
    other = asyncio.create_task(cache.wait(key(2), timeout=5))
    await settle()
    error = RuntimeError("series stream broke")
    cache.fail(key(1), error)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results == [error] * 3
    assert not other.done()
    cache.put(key(2), frame(2))
    assert await other == frame(2)
    cache.fail(key(3), error)  # nobody waits: nothing happens


@pytest.mark.anyio
async def test_fail_waiters_by_predicate() -> None:
    cache = FrameCache(max_bytes=1000)
    broken = [asyncio.create_task(cache.wait(key(n), timeout=5)) for n in (1, 2, 3)]
    same_uids_other_pacs = asyncio.create_task(cache.wait(key(1, origin="pacs-b"), timeout=5))
    other_series = asyncio.create_task(cache.wait(key(1, series_uid="other"), timeout=5))
    await settle()
    count = cache.fail_waiters(
        lambda k: (k.origin, k.series_uid) == ("pacs-a", "1.2.3.2"), LookupError("missing")
    )
    assert count == 3
    for task in broken:
        with pytest.raises(LookupError):
            await task
    assert not same_uids_other_pacs.done() and not other_series.done()
    assert cache.fail_waiters(lambda k: True, LookupError("all")) == 2
    for task in (same_uids_other_pacs, other_series):
        with pytest.raises(LookupError):
            await task
    assert cache._pending == {}


@pytest.mark.anyio
async def test_failed_futures_are_never_reported_as_unretrieved() -> None:
    # asyncio reports "Future exception was never retrieved" through the loop's exception
    # handler when such a future is collected (not as a warning pytest would catch).
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        cache = FrameCache(max_bytes=1000)
        # Every waiter cancelled, then the key failed before they unwound.
        cancelled = asyncio.create_task(cache.wait(key(1), timeout=5))
        # Every waiter timed out just as the key failed.
        timed_out = asyncio.create_task(cache.wait(key(2), timeout=0.01))
        await settle()
        cancelled.cancel()
        cache.fail(key(1), RuntimeError("late"))
        await asyncio.sleep(0.02)
        cache.fail_waiters(lambda k: True, RuntimeError("late"))
        await asyncio.gather(cancelled, timed_out, return_exceptions=True)
        # A plain failure with a waiter.
        waiter = asyncio.create_task(cache.wait(key(3), timeout=5))
        await settle()
        cache.fail(key(3), RuntimeError("broken"))
        await asyncio.gather(waiter, return_exceptions=True)
        del cancelled, timed_out, waiter
        gc.collect()
        await settle()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
    assert cache._pending == {}
