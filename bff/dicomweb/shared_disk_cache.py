"""The disk frame cache on a volume shared by several replicas (issue 15 item 2).

Same entries as :class:`~bff.dicomweb.disk_cache.DiskFrameCache` (content-addressed: a
digest of the source instance and of the encoding, so two replicas writing one key write
the same bytes), but **one size accountant for every process on the directory**: the
accounting lives in the directory itself, never in a process.

- ``ledger``: the total bytes and number of entries, rewritten under an exclusive
  ``flock`` on it. Every change of the set of entries (a new entry moved into place, an
  entry removed) is made while holding that lock, so the ledger counts each entry once
  whoever wrote it. The lock is held for a ``stat`` and a ``rename`` or ``unlink``, and
  for a scan only to recount: at :meth:`open` (what a crash between a rename and its
  ledger update left uncounted is found there) and when an eviction finds the ledger
  counting entries that are gone (removed by hand).
- ``evict.lock``: one replica at a time evicts, holding an exclusive ``flock`` on it
  (taken without waiting: a replica that finds it held leaves the work to the holder,
  which looks at the ledger again after releasing it). The evictor scans the entries
  (recency is the file's mtime, refreshed on a hit at most every ``touch_interval``
  seconds), removes the least recent ones until the total is under ``low_water`` of the
  bound, and also removes temporary files of dead writers. A scan happens only when the
  total passes the bound and frees a tenth of it: its cost is spread over the writes of a
  tenth of the bound.
- Writers write a temporary file (a dot name, locked by its writer with ``flock``: a
  process that dies releases it, so a cleaner knows the file is abandoned) then, under the
  ledger lock, ``os.replace`` it into place unless the entry already exists (a second
  writer of a key only drops its copy).
- Readers open the entry then read it, without any lock: an entry evicted meanwhile stays
  readable through the open file (POSIX unlink semantics; NFS does the same for one client
  by a "silly rename", docs/deployment.md). A missing entry is a miss (the instance is
  transcoded again); an unreadable one is a miss and is removed (if it is still the file
  that was read: a fresh entry of the same key is kept).

``flock`` is advisory and per open file description: a process holds one descriptor of
each lock file and a ``threading.Lock`` in front of it, since get/put run in worker
threads. Over NFS, Linux maps ``flock`` to NFSv4 byte-range locks (released by the server
when the client's lease expires); NFSv3 needs a working lockd.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bff.dicomweb.disk_cache import SUFFIX, DiskFrameCache, decode_entry, encode_entry
from bff.transcode import TranscodedInstance

log = logging.getLogger(__name__)

LEDGER = "ledger"
EVICT_LOCK = "evict.lock"
#: Seconds between two refreshes of an entry's mtime on hits (one metadata write per entry
#: and interval, not per hit: a shared volume pays for each).
TOUCH_INTERVAL_S = 60.0
#: The evictor brings the total down to this share of the bound.
LOW_WATER = 0.9
_LEDGER_WIDTH = 48  # fixed width: a reader without the lock never sees a shorter number


@dataclass(frozen=True)
class Entry:
    """An entry opened for reading: it stays readable if evicted before :meth:`load`."""

    key: str
    path: Path
    file: BinaryIO
    device: int
    inode: int


@dataclass(frozen=True)
class _Found:
    mtime_ns: int
    size: int
    path: Path
    device: int
    inode: int


class SharedDiskFrameCache(DiskFrameCache):
    """Entries under ``directory``, shared by every process that opens it, at most
    ``max_bytes`` in total (counted once, in the directory's ledger)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        touch_interval: float = TOUCH_INTERVAL_S,
        low_water: float = LOW_WATER,
    ) -> None:
        super().__init__(directory, max_bytes)
        self.touch_interval = touch_interval
        self.low_water = low_water
        self.evictions = 0  # scans this process made as the evictor
        self._ledger_fd = -1
        self._evict_fd = -1
        self._ledger_thread_lock = threading.Lock()
        self._evict_thread_lock = threading.Lock()
        self._seen = (0, 0)  # the ledger as this process last read it (total, count)

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory (private), then rebuild the ledger from the entries under
        its lock (removing what dead writers left) and evict if over the bound."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._ledger_fd = os.open(self.directory / LEDGER, os.O_RDWR | os.O_CREAT, 0o600)
            self._evict_fd = os.open(self.directory / EVICT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            self._recount()  # no working flock (NFS without locks): refused here
        except OSError:
            self.close()
            raise
        log.info(
            "shared frame disk cache %s: %d entries, %d bytes",
            self.directory,
            self._seen[1],
            self._seen[0],
        )
        self._evict()

    def close(self) -> None:
        """Close the lock files; a write still running in a thread then fails (logged)
        rather than use a descriptor number the process may have reused."""
        with self._evict_thread_lock, self._ledger_thread_lock:
            for fd in (self._ledger_fd, self._evict_fd):
                if fd >= 0:
                    os.close(fd)
            self._ledger_fd = self._evict_fd = -1

    # -- reading ---------------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The entry opened, or None when no process has it (a miss)."""
        path = self._path(key)
        try:
            file = path.open("rb")
        except OSError:
            return None
        stat = os.fstat(file.fileno())
        if self.touch_interval >= 0 and time.time() - stat.st_mtime >= self.touch_interval:
            with contextlib.suppress(OSError):  # evicted meanwhile: nothing to refresh
                os.utime(path)
        return Entry(key, path, file, stat.st_dev, stat.st_ino)

    def load(self, entry: Entry) -> TranscodedInstance | None:
        """The instance read from an opened entry; an unreadable one is removed."""
        try:
            with entry.file:
                return decode_entry(entry.file.read())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("frame disk cache entry %s unreadable, dropped: %r", entry.key, exc)
            self._remove_if_same(entry.path, entry.device, entry.inode)
            return None

    def get(self, key: str) -> TranscodedInstance | None:
        entry = self.lookup(key)
        instance = None if entry is None else self.load(entry)
        if instance is None:
            self.misses += 1
        else:
            self.hits += 1
        return instance

    # -- writing ---------------------------------------------------------------------

    def put(self, key: str, instance: TranscodedInstance) -> None:
        path = self._path(key)
        if path.exists():  # another replica (or an earlier opening) wrote it: same bytes
            return
        raw = encode_entry(instance)
        if len(raw) > self.max_bytes:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = -1
        try:
            path.parent.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # "being written": released if this process dies
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            with self._ledger() as (total, count):
                if path.exists():
                    os.unlink(tmp)
                    return
                os.replace(tmp, path)
                self._write_ledger(total + len(raw), count + 1)
        except OSError as exc:  # a full or read-only disk only costs the cache
            log.warning("frame disk cache write failed: %r", exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        finally:
            if fd >= 0:
                os.close(fd)
        if self._seen[0] > self.max_bytes:  # the ledger as this write left it
            self._evict()

    # -- accounting ------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of every entry in the directory (all replicas), as the ledger says."""
        return self._peek()[0]

    def __len__(self) -> int:
        return self._peek()[1]

    def _peek(self) -> tuple[int, int]:
        """The ledger read without its lock (metrics): the last value read on a race."""
        with contextlib.suppress(OSError, ValueError):
            parsed = _parse(os.pread(self._ledger_fd, _LEDGER_WIDTH, 0))
            if parsed is not None:
                self._seen = parsed
        return self._seen

    @contextlib.contextmanager
    def _ledger(self) -> Iterator[tuple[int, int]]:
        """Hold the ledger lock (this process's threads, then every process)."""
        with self._ledger_thread_lock:
            fcntl.flock(self._ledger_fd, fcntl.LOCK_EX)
            try:
                parsed = _parse(os.pread(self._ledger_fd, _LEDGER_WIDTH, 0))
                self._seen = parsed if parsed is not None else (0, 0)
                yield self._seen
            finally:
                fcntl.flock(self._ledger_fd, fcntl.LOCK_UN)

    def _write_ledger(self, total: int, count: int) -> None:
        """Under the ledger lock only."""
        total, count = max(total, 0), max(count, 0)
        line = f"{total} {count}\n".encode().ljust(_LEDGER_WIDTH - 1) + b"\n"
        os.pwrite(self._ledger_fd, line, 0)
        self._seen = (total, count)

    def _remove_if_same(self, path: Path, device: int, inode: int) -> None:
        """Remove the entry at ``path`` if it is still that file (counted in the ledger)."""
        with contextlib.suppress(OSError), self._ledger() as (total, count):
            try:
                stat = path.stat()
                if (stat.st_dev, stat.st_ino) != (device, inode):
                    return  # already replaced by a fresh entry of the same key
                path.unlink()
            except OSError:
                return  # already removed by another process
            self._write_ledger(total - stat.st_size, count - 1)

    # -- eviction --------------------------------------------------------------------

    def _evict(self) -> None:
        """Bring the total under the bound, if no other process is doing it.

        Whoever fails to take the evict lock wrote to the ledger before trying; the holder
        reads the ledger again after releasing it, so that write is never left over the
        bound with nobody evicting. A round that removes nothing (a read-only volume) ends
        it: the next write tries again."""
        while self._take_evict_lock():
            try:
                removed = self._evict_locked()
            except OSError as exc:  # the volume failing: the next write tries again
                log.warning("frame disk cache eviction failed: %r", exc)
                return
            finally:
                self._release_evict_lock()
            if not removed or not self._over_bound():
                return

    def _over_bound(self) -> bool:
        with self._ledger() as (total, _):
            return total > self.max_bytes

    def _take_evict_lock(self) -> bool:
        if not self._evict_thread_lock.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self._evict_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process
            self._evict_thread_lock.release()
            return False
        return True

    def _release_evict_lock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._evict_fd, fcntl.LOCK_UN)
        self._evict_thread_lock.release()

    def _evict_locked(self) -> bool:
        """One round: whether it removed anything (or corrected the ledger)."""
        if not self._over_bound():
            return False
        self.evictions += 1
        removed = False
        target = int(self.max_bytes * self.low_water)
        found = sorted(self._scan(), key=lambda f: (f.mtime_ns, f.path.name))
        if sum(f.size for f in found) <= self.max_bytes:
            # What is there fits: the ledger counts entries that are gone (removed by
            # hand). Count again, exactly, rather than evict what is there; if entries
            # written since the scan put it over the bound, another round evicts.
            return self._recount() or self._seen[0] > self.max_bytes
        batch = 64  # the ledger lock is held for a few unlinks at a time
        for start in range(0, len(found), batch):
            with self._ledger() as (total, count):
                for victim in found[start : start + batch]:
                    if total <= target:
                        break
                    try:
                        stat = victim.path.stat()
                        if (stat.st_dev, stat.st_ino) != (victim.device, victim.inode):
                            continue  # rewritten since the scan: it is recent
                        victim.path.unlink()  # readers holding it open still read it
                    except OSError:
                        continue  # removed by another process (a damaged entry)
                    total, count = total - stat.st_size, count - 1
                    removed = True
                self._write_ledger(total, count)
                if total <= target:
                    return True
        # Every entry scanned is gone and the ledger still says too much: it drifted, or
        # writers were quick. Count again, exactly.
        return self._recount() or removed

    def _recount(self) -> bool:
        """The ledger set from a scan under its lock: whether it changed."""
        with self._ledger() as (total, count):
            found = self._scan()
            self._write_ledger(sum(f.size for f in found), len(found))
        return self._seen != (total, count)

    def _scan(self) -> list[_Found]:
        """Every entry, and the removal of temporary files no live writer holds."""
        found: list[_Found] = []
        for shard in _entries(self.directory):
            for item in _entries(shard.path):
                if item.name.startswith("."):
                    _remove_if_abandoned(Path(item.path))
                elif item.name.endswith(SUFFIX):
                    with contextlib.suppress(OSError):
                        stat = item.stat(follow_symlinks=False)
                        found.append(
                            _Found(
                                stat.st_mtime_ns,
                                stat.st_size,
                                Path(item.path),
                                stat.st_dev,
                                stat.st_ino,
                            )
                        )
        return found


def _entries(directory: Path | str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as items:
            return [i for i in items if i.name not in {LEDGER, EVICT_LOCK}]
    except OSError:  # not a directory, or removed meanwhile
        return []


def _remove_if_abandoned(path: Path) -> None:
    """A temporary entry whose writer is gone (its flock released): a crash's leftover."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # a live writer holds it
    try:
        path.unlink()
        log.info("frame disk cache: removed an abandoned temporary file %s", path.name)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parse(raw: bytes) -> tuple[int, int] | None:
    parts = raw.split()
    if len(parts) != 2 or not raw.endswith(b"\n") or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])
