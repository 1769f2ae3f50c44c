"""A bounded disk cache of transcoded instances: a second opening skips transcoding.

The in-memory :class:`~bff.dicomweb.cache.FrameCache` serves frames while they fit in
it; once evicted (another exam opened meanwhile) or after a restart, a series would be
transcoded again: ~8 ms of CPU a CT slice, the largest server-side cost of an opening
(issue 5). This cache keeps each transcoded instance on disk, addressed by a digest of
the *source* Part-10 bytes and of the encoding parameters: an instance changed in the
PACS has another digest (never a stale answer), the same instance reached through
another location or study path is the same entry, and nothing needs invalidating.

The series is still streamed from the PACS (cheap: one multipart answer); each instance
received is looked up here before it goes to the transcoding pool. Entries are plain
files (a JSON header line then the frames), written atomically; the total size is
bounded (least recently used entries removed first). What is cached is what the BFF
already serves to any granted viewer, so the directory must be as private as the PACS:
it is created mode 0700. Disabled when ``DRIMBOX_FRAME_DISK_CACHE_DIR`` is empty.

This class keeps its size accounting (recency, byte total) in the process: one process
per directory. Replicas sharing one volume use
:class:`~bff.dicomweb.shared_disk_cache.SharedDiskFrameCache` instead
(``DRIMBOX_FRAME_DISK_CACHE_SHARED``): same entries, one size accountant in the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from bff.transcode import EncodeParams, TranscodedInstance

log = logging.getLogger(__name__)

SUFFIX = ".inst"
#: Format of an entry; bumped when the layout or the transcoder's output changes.
VERSION = 2  # 2: palette images served as RGB (issue 14)


def entry_key(source: bytes, params: EncodeParams) -> str:
    """The entry of a source instance transcoded with ``params`` (hex digest)."""
    digest = hashlib.blake2b(digest_size=20, person=b"drimbox-frames")
    digest.update(f"{VERSION}|{params.quality}|{params.serve}|{params.codec}|".encode())
    digest.update(source)
    return digest.hexdigest()


def encode_entry(instance: TranscodedInstance) -> bytes:
    header = asdict(instance)
    frames = header.pop("frames")
    header["frame_lengths"] = [len(f) for f in frames]
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(frames)


def decode_entry(raw: bytes) -> TranscodedInstance:
    line, _, body = raw.partition(b"\n")
    header = json.loads(line)
    lengths = header.pop("frame_lengths")
    frames, offset = [], 0
    for length in lengths:
        frames.append(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("truncated entry")
    return TranscodedInstance(frames=tuple(frames), **header)


class DiskFrameCache:
    """Entries under ``directory``, at most ``max_bytes`` in total."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # key -> bytes, LRU first
        self._total = 0
        self._lock = threading.Lock()  # get/put run in worker threads
        self.hits = 0
        self.misses = 0

    def open(self) -> None:
        """Create the directory (private) and index what an earlier run left."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = []
        for path in self.directory.glob(f"*/*{SUFFIX}"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                found.append((stat.st_mtime, path.stem, stat.st_size))
        for _, key, size in sorted(found):
            self._sizes[key] = size
            self._total += size
        self._evict()
        log.info(
            "frame disk cache %s: %d entries, %d bytes", self.directory, len(found), self._total
        )

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str) -> TranscodedInstance | None:
        """The cached instance, or None (absent, unreadable: the entry is dropped)."""
        with self._lock:
            known = key in self._sizes
            if known:
                self._sizes.move_to_end(key)
        if not known:
            self.misses += 1
            return None
        path = self._path(key)
        try:
            instance = decode_entry(path.read_bytes())
            os.utime(path)  # recency survives a restart
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("frame disk cache entry %s unreadable, dropped: %r", key, exc)
            self._forget(key)
            self.misses += 1
            return None
        self.hits += 1
        return instance

    def put(self, key: str, instance: TranscodedInstance) -> None:
        raw = encode_entry(instance)
        if len(raw) > self.max_bytes:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk only costs the cache
            log.warning("frame disk cache write failed: %r", exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        with self._lock:
            self._total += len(raw) - self._sizes.pop(key, 0)
            self._sizes[key] = len(raw)
        self._evict()

    def close(self) -> None:
        """Nothing to release here (the shared cache holds its lock files open)."""

    @property
    def nbytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._sizes)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._total -= self._sizes.pop(key, 0)
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def _evict(self) -> None:
        while True:
            with self._lock:
                if self._total <= self.max_bytes or not self._sizes:
                    return
                key, size = self._sizes.popitem(last=False)
                self._total -= size
            with contextlib.suppress(OSError):
                self._path(key).unlink()

    async def aget(self, key: str) -> TranscodedInstance | None:
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, instance: TranscodedInstance) -> None:
        await asyncio.to_thread(self.put, key, instance)
