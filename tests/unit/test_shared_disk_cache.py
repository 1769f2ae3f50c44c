"""bff.dicomweb.shared_disk_cache: the disk frame cache on a volume shared by replicas
(issue 15 item 2: "the disk frame cache can be a shared volume (content-addressed
entries, a single size accountant)").

Two caches on one directory stand for two replicas; the last tests use real processes
(multiprocessing, spawn) for what only separate processes show: flock between processes
and its release when one dies. Counting only: recency is set with ``os.utime`` where an
order matters, never waited for.
"""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import stat
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from bff.dicomweb.disk_cache import entry_key
from bff.dicomweb.shared_disk_cache import EVICT_LOCK, LEDGER, SharedDiskFrameCache
from bff.transcode import EncodeParams, TranscodedInstance
from tests.unit.test_disk_cache import transcoded

BIG = (b"x" * 1000,)


def key(n: int) -> str:
    return entry_key(str(n).encode(), EncodeParams())


def inst(n: int) -> TranscodedInstance:
    """The instance of key ``n``; every one the same size on disk."""
    return transcoded(f"1.{n:04d}", BIG)


def entry_bytes(tmp_path: Path) -> int:
    """The size of one entry of :data:`BIG` on disk, header included."""
    probe = SharedDiskFrameCache(tmp_path / "probe", 10**6)
    probe.open()
    probe.put(key(-1), inst(0))
    size = probe.nbytes
    probe.close()
    return size


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SharedDiskFrameCache, SharedDiskFrameCache, int]]:
    """Two replicas' caches on one directory, bounded at 10 entries."""
    size = entry_bytes(tmp_path)
    a = SharedDiskFrameCache(tmp_path / "frames", 10 * size, touch_interval=0)
    b = SharedDiskFrameCache(tmp_path / "frames", 10 * size, touch_interval=0)
    a.open()
    b.open()
    yield a, b, size
    a.close()
    b.close()


def on_disk(directory: Path) -> tuple[int, int]:
    files = list(directory.glob("*/*.inst"))
    return sum(f.stat().st_size for f in files), len(files)


def with_one_entry(directory: Path) -> SharedDiskFrameCache:
    cache = SharedDiskFrameCache(directory, 10**6)
    cache.open()
    cache.put(key(1), inst(1))
    return cache


def age(cache: SharedDiskFrameCache, k: str, seconds_ago: int) -> None:
    """Set an entry's recency (its mtime), as a hit that long ago would have."""
    path = cache._path(k)
    then = path.stat().st_mtime_ns - seconds_ago * 10**9
    os.utime(path, ns=(then, then))


def test_an_entry_written_by_one_replica_is_a_hit_for_the_other(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, size = pair
    assert stat.S_IMODE(a.directory.stat().st_mode) == 0o700  # it holds images
    a.put(key(1), inst(1))
    assert b.get(key(1)) == inst(1)
    assert (b.hits, b.misses) == (1, 0)
    # A second writer of one key (both transcoded it) is harmless and counted once.
    b.put(key(1), inst(1))
    assert a.nbytes == b.nbytes == size and len(a) == len(b) == 1
    assert on_disk(a.directory) == (size, 1)


def test_two_replicas_writing_past_the_bound_keep_one_total_under_it(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, _ = pair
    for n in range(30):  # 30 entries, 3 times the bound, two by two
        (a if n // 2 % 2 else b).put(key(n), inst(n))
        total, count = on_disk(a.directory)
        assert total <= a.max_bytes  # held after every write, whoever wrote
        assert (a.nbytes, len(a)) == (total, count)  # the ledger is the directory
    assert a.nbytes == b.nbytes
    assert a.evictions >= 1 and b.evictions >= 1  # both evicted, one at a time
    # Each replica alone would have counted only its 15 entries (1.5 times the bound)
    # and evicted the other's: the newest entries are there, whoever wrote them.
    assert a.get(key(29)) is not None and b.get(key(28)) is not None


def test_least_recently_used_go_first_whoever_used_them(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, _ = pair
    for n in range(10):
        a.put(key(n), inst(n))
        age(a, key(n), 1000 - n)  # written in order, 0 the oldest
    age(a, key(0), 2000)
    assert b.get(key(0)) is not None  # a hit on the other replica refreshes it
    b.put(key(10), inst(10))  # over the bound: down to 90 %
    assert a.get(key(0)) is not None
    assert a.get(key(1)) is None and a.get(key(2)) is None  # the least recent went
    assert all(a.get(key(n)) is not None for n in range(3, 11))


def test_hits_refresh_recency_at_most_every_interval(tmp_path: Path) -> None:
    cache = SharedDiskFrameCache(tmp_path / "frames", 10**6, touch_interval=3600)
    cache.open()
    cache.put(key(1), inst(1))
    age(cache, key(1), 60)
    before = cache._path(key(1)).stat().st_mtime_ns
    assert cache.get(key(1)) is not None
    assert cache._path(key(1)).stat().st_mtime_ns == before  # recent enough: no write
    age(cache, key(1), 7200)
    assert cache.get(key(1)) is not None
    assert cache._path(key(1)).stat().st_mtime_ns > before  # refreshed
    cache.close()


def test_eviction_never_breaks_a_read_under_way(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, _ = pair
    a.put(key(0), inst(0))
    entry = b.lookup(key(0))  # replica B opened it and is about to read it
    assert entry is not None
    age(a, key(0), 1000)  # yet it is the first to go
    for n in range(1, 12):  # replica A writes past the bound: key 0 is evicted
        a.put(key(n), inst(n))
    assert not a._path(key(0)).exists() and a.get(key(0)) is None
    assert b.load(entry) == inst(0)  # the open file is still whole


def test_a_damaged_entry_is_a_miss_removed_and_uncounted(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, size = pair
    a.put(key(1), inst(1))
    a.put(key(2), inst(2))
    path = a._path(key(1))
    raw = path.read_bytes()
    path.write_bytes(b"#" + raw[1:])  # a failing disk: its header unreadable
    assert b.get(key(1)) is None and b.misses == 1
    assert not path.exists()
    assert (a.nbytes, len(a)) == (size, 1) == on_disk(a.directory)


def test_a_damaged_entry_replaced_meanwhile_is_kept(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, _ = pair
    a.put(key(1), inst(1))
    path = a._path(key(1))
    path.write_bytes(b"{not json\n")
    entry = b.lookup(key(1))  # B opened the damaged file...
    assert entry is not None
    path.unlink()  # ...then it was evicted and A wrote the entry again
    a.put(key(1), inst(1))
    assert b.load(entry) is None  # B's read fails, and it removes only what it read
    assert a.get(key(1)) == inst(1)


def test_a_crash_leftover_is_ignored_then_removed_a_live_write_is_kept(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "frames"
    first = with_one_entry(directory)
    shard = first._path(key(1)).parent
    dead = shard / f".{key(2)}.inst.999999.1"  # a writer killed mid-write
    dead.write_bytes(b'{"study_uid":')
    live = shard / f".{key(3)}.inst.999999.2"  # a writer at work in another replica
    live.write_bytes(b'{"study_uid":')
    with live.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert first.get(key(2)) is None  # never read as an entry
        second = SharedDiskFrameCache(directory, 10**6)
        second.open()  # a replica starting counts the entries and cleans
        assert not dead.exists() and live.exists()
        assert len(second) == 1 and second.nbytes == on_disk(directory)[0]
    second.close()
    first.close()


def test_the_ledger_is_rebuilt_at_start_when_a_writer_died_before_counting(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "frames"
    with_one_entry(directory).close()
    (directory / LEDGER).write_bytes(b"0 0\n")  # the rename done, the count never came
    restarted = SharedDiskFrameCache(directory, 10**6)
    restarted.open()
    assert (restarted.nbytes, len(restarted)) == on_disk(directory) != (0, 0)
    restarted.close()
    (directory / LEDGER).write_bytes(b"garbage")  # a damaged ledger
    restarted = SharedDiskFrameCache(directory, 10**6)
    restarted.open()
    assert (restarted.nbytes, len(restarted)) == on_disk(directory)
    restarted.close()


def test_entries_removed_by_hand_are_recounted_not_made_up_for_by_evicting(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, b, size = pair
    for n in range(9):
        a.put(key(n), inst(n))
    for n in range(5):
        a._path(key(n)).unlink()  # an operator freeing space: the ledger still says 9
    b.put(key(9), inst(9))
    b.put(key(10), inst(10))  # the ledger says 11 entries, over the bound of 10
    assert on_disk(a.directory) == (6 * size, 6)  # nothing there was evicted
    assert (a.nbytes, len(a)) == on_disk(a.directory)


def test_the_lock_files_are_private(
    pair: tuple[SharedDiskFrameCache, SharedDiskFrameCache, int],
) -> None:
    a, _, _ = pair
    for name in (LEDGER, EVICT_LOCK):
        assert stat.S_IMODE((a.directory / name).stat().st_mode) == 0o600


# -- real processes ----------------------------------------------------------------------


def _writer(directory: str, max_bytes: int, first: int, count: int, started: Barrier) -> None:
    cache = SharedDiskFrameCache(Path(directory), max_bytes)
    cache.open()
    started.wait(60)  # both replicas up before either writes
    for n in range(first, first + count):
        cache.put(key(n), inst(n))
    cache.close()


def _hold_evict_lock(directory: str, ready: Connection) -> None:
    fd = os.open(Path(directory) / EVICT_LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.send("held")
    ready.recv()  # never comes: the parent kills this process


def test_two_processes_writing_past_the_bound_keep_one_total_under_it(tmp_path: Path) -> None:
    size = entry_bytes(tmp_path)
    directory = tmp_path / "frames"
    bound = 10 * size
    spawn = multiprocessing.get_context("spawn")
    started = spawn.Barrier(2)
    writers = [
        spawn.Process(target=_writer, args=(str(directory), bound, first, 40, started))
        for first in (0, 1000)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    total, count = on_disk(directory)
    assert total <= bound and count >= 1  # 80 entries written, 8 times the bound
    reader = SharedDiskFrameCache(directory, bound)
    reader.open()
    assert (reader.nbytes, len(reader)) == (total, count)
    assert reader.get(key(39)) is not None or reader.get(key(1039)) is not None
    reader.close()


def test_the_evict_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    cache = SharedDiskFrameCache(tmp_path / "frames", 10**6)
    cache.open()
    spawn = multiprocessing.get_context("spawn")
    parent, child = spawn.Pipe()
    holder = spawn.Process(target=_hold_evict_lock, args=(str(cache.directory), child))
    holder.start()
    assert parent.poll(60) and parent.recv() == "held"
    assert not cache._take_evict_lock()  # another process evicts: this one does not
    holder.kill()  # SIGKILL: no chance to unlock
    holder.join(timeout=60)
    assert cache._take_evict_lock()  # the kernel released it with the process
    cache._release_evict_lock()
    cache.close()


def test_a_volume_without_working_locks_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS mounted without lock support answers ENOLCK: the replica does not start with a
    bound nobody enforces. (A test double: this machine's file systems all lock.)"""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="No locks available"):
        SharedDiskFrameCache(tmp_path / "frames", 10**6).open()
