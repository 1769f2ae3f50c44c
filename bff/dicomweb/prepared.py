"""The prepared-frame store: the served form of a published exam, made once (issue 16).

When a KOS is published the BFF transcodes every instance of its series in the background
(:mod:`bff.origins.preparation`) and keeps here, per instance, each frame's whole HTTP
answer as the facade sends it (the multipart part, its headers and the closing delimiter,
with a boundary of its own), so that answering a prepared frame is one ``pread`` and one
``bytes`` handed to the server: no transcoding, no PACS stream, no parsing, no framing.

An opening of a prepared series needs neither the PACS's series stream nor a digest of
the source instances (what :mod:`bff.dicomweb.disk_cache` needs): entries are addressed
by (served form, location, study, series, SOP Instance UID), the names the facade is
asked by. That is safe because of how they are made and dropped (the staleness rule,
docs/transcoding.md): an instance is prepared from the PACS's answer under its own
study and series path of the location the KOS names, so a frame served for a study
belongs to the study the grant names; DICOM makes a SOP Instance UID name one instance
forever, and a PACS that re-sends another image under the same UID (a correction) must
have its exam published again (``kos add`` again, or the admin API), which prepares it
anew; unpublishing the KOS drops its series.

Layout under the directory (created 0700: it holds images)::

    <series digest>/<SOP Instance UID>.prep   one line of JSON (frame spans, facts), then
                                              the frames' answers one after the other
    <series digest>/series.json               written last: the series is complete

    .ledger                                   the store's total size (JSON), rewritten
                                              atomically under an exclusive flock of
    .lock                                     (every replica's writes and drops)

Everything needed to answer is indexed in memory at :meth:`PreparedStore.open` (the
first lines only) and as instances are written; the total size is bounded: a write that
would pass it raises :class:`StoreFull` (a published exam is not evicted for another).

Several replicas share one directory (a shared volume; issues 15 and 16): one replica
prepares a KOS (the lease, :mod:`bff.origins.preparation`) and the others answer from
what it wrote. Every file is written to a temporary name and moved into place
(``os.replace``), so a reader sees a whole entry or none. A lookup that misses the
in-memory index reads the expected file (its name follows from the request: the series
digest and the SOP Instance UID, checked to be a UID) and indexes it; a miss is
remembered for :data:`MISS_TTL` seconds (at most :data:`MAX_MISSES` of them), so a study
that is not prepared costs one ``open`` per instance every few seconds, no more. An entry
replaced by another replica (a KOS published again) has a new inode: each frame read
checks the open file's inode and size against the index and re-reads the header when
they differ. The size bound is kept by one ledger for every replica (``.ledger`` under
a ``flock`` of ``.lock``), not by each replica's own count.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bff.dicomweb.multipart import closing_delimiter, encode_part, new_boundary
from bff.transcode import EncodeParams, TranscodedInstance

log = logging.getLogger(__name__)

SUFFIX = ".prep"
MANIFEST = "series.json"
#: Format of an entry; bumped when the layout or the transcoder's output changes.
VERSION = 1
#: What a UID may be, the only thing of an instance that names a file here.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: Longest first line of an entry (its JSON header): a bound on what open() reads.
MAX_HEADER_BYTES = 1 << 20
LEDGER = ".ledger"
LOCK = ".lock"
#: How long a lookup that found no file is remembered (seconds), and how many are.
MISS_TTL = 5.0
MAX_MISSES = 65536

_Key = tuple[str, str, str, str, str]


class StoreFull(Exception):
    """The store's size bound would be passed (DRIMBOX_PREPARED_BYTES)."""


@dataclass(frozen=True)
class PreparedFrame:
    """One prepared frame: the whole answer body and its Content-Type."""

    body: bytes
    media_type: str
    transfer_syntax_uid: str
    #: where the frame's own bytes lie in ``body``
    data_offset: int
    data_length: int

    @property
    def data(self) -> bytes:
        return self.body[self.data_offset : self.data_offset + self.data_length]


@dataclass(frozen=True)
class _Entry:
    path: str
    transfer_syntax_uid: str
    media_type: str
    #: per frame: (offset in the file, length, offset of the frame's bytes in the answer,
    #: their length)
    spans: tuple[tuple[int, int, int, int], ...]
    size: int
    #: the file's inode: a file replaced by another replica is re-read
    inode: int


def form_of(params: EncodeParams) -> str:
    """The served form an entry was made for (the encoding settings it depends on)."""
    return f"{VERSION}|{params.quality}|{params.serve}|{params.codec}"


def series_digest(form: str, origin: str, study_uid: str, series_uid: str) -> str:
    digest = hashlib.blake2b(digest_size=16, person=b"drimbox-prep")
    digest.update(f"{form}|{origin}|{study_uid}|{series_uid}".encode())
    return digest.hexdigest()


def media_type_of(syntax: str, boundary: str) -> str:
    """The answer's Content-Type, as the facade writes it (bff/facade/routes.py)."""
    return (
        f'multipart/related; type="application/octet-stream"; '
        f"transfer-syntax={syntax}; boundary={boundary}"
    )


def _facts(instance: TranscodedInstance) -> dict[str, Any]:
    facts = asdict(instance)
    facts["n_frames"] = len(facts.pop("frames"))
    return facts


def _encode(
    instance: TranscodedInstance, form: str, origin: str
) -> tuple[bytes, str, list[list[int]]]:
    """The file: its header line and every frame's whole answer; and its spans."""
    syntax = instance.transfer_syntax_uid
    part_type = f"application/octet-stream; transfer-syntax={syntax}"
    while True:
        boundary = new_boundary()
        if not any(boundary.encode() in frame for frame in instance.frames):
            break
    closing = closing_delimiter(boundary)
    bodies, spans, offset = [], [], 0
    for frame in instance.frames:
        part = encode_part(frame, part_type, boundary)
        body = part + closing
        data_offset = len(part) - len(frame) - 2  # the part ends with the frame + CRLF
        spans.append([offset, len(body), data_offset, len(frame)])
        bodies.append(body)
        offset += len(body)
    header = {
        "version": VERSION,
        "form": form,
        "origin": origin,
        "syntax": syntax,
        "boundary": boundary,
        "spans": spans,
        "facts": _facts(instance),
    }
    line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
    return line + b"".join(bodies), boundary, [[len(line) + s[0], *s[1:]] for s in spans]


class PreparedStore:
    """Prepared instances under ``directory``, at most ``max_bytes`` in total."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._index: dict[_Key, _Entry] = {}
        #: series digest -> (its manifest's inode, the facts)
        self._complete: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
        #: lookups that found no file (key or series digest) -> until when remembered
        self._misses: dict[object, float] = {}
        self._lock = threading.Lock()  # writes run in threads
        self._lock_fd = -1

    # -- start ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory (private) and index what an earlier run (or another
        replica) left; the ledger is counted anew when it is missing or unreadable."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self._lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        total = 0
        for series_dir in self.directory.iterdir():
            if not series_dir.is_dir():
                continue
            self._read_manifest(series_dir)
            for path in series_dir.glob(f"*{SUFFIX}"):
                try:
                    total += self._index_file(path).size
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("prepared entry %s unreadable, dropped: %r", path.name, exc)
                    with contextlib.suppress(OSError):
                        path.unlink()
        with self._ledger() as counted:
            if counted is None:
                self._write_ledger(total)
        log.info(
            "prepared store %s: %d instances, %d complete series, %d bytes",
            self.directory,
            len(self._index),
            len(self._complete),
            self.nbytes,
        )

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- the ledger: one size accountant for every replica ---------------------------------

    @contextlib.contextmanager
    def _ledger(self) -> Iterator[int | None]:
        """The total under the exclusive lock of every replica (None: no ledger yet)."""
        with self._lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._read_ledger()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _read_ledger(self) -> int | None:
        try:
            total = json.loads((self.directory / LEDGER).read_bytes())["bytes"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return total if isinstance(total, int) and total >= 0 else None

    def _write_ledger(self, total: int) -> None:
        tmp = self.directory / f".{LEDGER}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(json.dumps({"bytes": max(0, total)}).encode())
        os.replace(tmp, self.directory / LEDGER)

    # -- the index, and the directory behind it --------------------------------------------

    def _read_manifest(self, series_dir: Path) -> dict[str, dict[str, Any]] | None:
        path = series_dir / MANIFEST
        try:
            with path.open("rb") as file:
                inode = os.fstat(file.fileno()).st_ino
                manifest: dict[str, Any] = json.loads(file.read())
            if manifest.get("version") != VERSION:
                raise ValueError("old version")
            facts: dict[str, dict[str, Any]] = manifest["instances"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("prepared series %s unreadable, re-prepared: %r", series_dir.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._complete[series_dir.name] = (inode, facts)
        return facts

    def _index_file(self, path: Path, expected: _Key | None = None) -> _Entry:
        with path.open("rb") as file:
            line = file.readline(MAX_HEADER_BYTES)
            stat = os.fstat(file.fileno())
        header = json.loads(line)
        if header["version"] != VERSION:
            raise ValueError("old version")
        facts = header["facts"]
        key = (
            header["form"],
            header["origin"],
            facts["study_uid"],
            facts["series_uid"],
            facts["sop_uid"],
        )
        if expected is not None and key != expected:
            raise ValueError("an entry under another name")
        # The header's spans count from the end of its own line.
        spans = tuple((len(line) + s[0], s[1], s[2], s[3]) for s in header["spans"])
        entry = _Entry(
            str(path),
            header["syntax"],
            media_type_of(header["syntax"], header["boundary"]),
            spans,
            stat.st_size,
            stat.st_ino,
        )
        self._index[key] = entry
        return entry

    def _missed(self, key: object) -> bool:
        until = self._misses.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        self._misses.pop(key, None)
        return False

    def _remember_miss(self, key: object) -> None:
        if len(self._misses) >= MAX_MISSES:
            self._misses.clear()
        self._misses[key] = time.monotonic() + MISS_TTL

    def _path(self, key: _Key) -> Path:
        return self.directory / series_digest(*key[:4]) / f"{key[4]}{SUFFIX}"

    def _lookup(self, key: _Key) -> _Entry | None:
        """The index's entry, else the file another replica (or an earlier run) wrote."""
        entry = self._index.get(key)
        if entry is not None:
            return entry
        sop_uid = key[4]
        # The SOP Instance UID comes from the request: it names a file only as a UID.
        if len(sop_uid) > 64 or not _UID.fullmatch(sop_uid) or self._missed(key):
            return None
        try:
            return self._index_file(self._path(key), key)
        except (OSError, ValueError, KeyError, TypeError):
            self._remember_miss(key)
            return None

    def _forget(self, key: _Key) -> None:
        self._index.pop(key, None)

    # -- answering -------------------------------------------------------------------------

    def frame(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str, number: int
    ) -> PreparedFrame | None:
        """The prepared answer of one frame, or None (not prepared, or gone: the caller
        takes the live path). One small read from the page cache; no parsing."""
        key = (form, origin, study_uid, series_uid, sop_uid)
        entry = self._lookup(key)
        if entry is None or number <= 0:
            return None
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            self._forget(key)  # dropped by another replica
            return None
        try:
            stat = os.fstat(fd)
            if (stat.st_ino, stat.st_size) != (entry.inode, entry.size):
                # Replaced by another replica (published again): its header read anew.
                self._forget(key)
                entry = self._lookup(key)
                if entry is None or (stat.st_ino, stat.st_size) != (entry.inode, entry.size):
                    return None  # replaced again meanwhile: the live path this time
            if number > len(entry.spans):
                return None
            offset, length, data_offset, data_length = entry.spans[number - 1]
            body = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(body) != length:
            return None
        return PreparedFrame(
            body, entry.media_type, entry.transfer_syntax_uid, data_offset, data_length
        )

    def frame_count(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str
    ) -> int | None:
        """How many frames a prepared instance has; None when it is not prepared."""
        entry = self._lookup((form, origin, study_uid, series_uid, sop_uid))
        return None if entry is None else len(entry.spans)

    def series_facts(
        self, form: str, origin: str, study_uid: str, series_uid: str
    ) -> dict[str, dict[str, Any]] | None:
        """Per SOP Instance UID, what was learnt preparing a complete series (the
        TranscodedInstance's fields but its frames, and ``n_frames``); None when the series
        is not (completely) prepared. The manifest is looked at on disk (one ``stat``): a
        series completed, dropped or prepared anew by another replica is seen."""
        digest = series_digest(form, origin, study_uid, series_uid)
        series_dir = self.directory / digest
        try:
            inode = os.stat(series_dir / MANIFEST).st_ino
        except OSError:
            self._complete.pop(digest, None)
            return None
        known = self._complete.get(digest)
        facts = known[1] if known is not None and known[0] == inode else None
        if facts is None:
            facts = self._read_manifest(series_dir)
            if facts is None:
                return None
        for sop_uid in facts:
            if self._lookup((form, origin, study_uid, series_uid, sop_uid)) is None:
                return None  # an entry went missing: not prepared any more
        return facts

    def has_instance(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str
    ) -> bool:
        return self._lookup((form, origin, study_uid, series_uid, sop_uid)) is not None

    def instance_facts(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str
    ) -> dict[str, Any] | None:
        """The facts of one prepared instance (read from its file's first line)."""
        entry = self._lookup((form, origin, study_uid, series_uid, sop_uid))
        if entry is None:
            return None
        try:
            with open(entry.path, "rb") as file:
                facts: dict[str, Any] = json.loads(file.readline(MAX_HEADER_BYTES))["facts"]
        except (OSError, ValueError, KeyError):
            return None
        return facts

    def count(self, form: str, origin: str, study_uid: str, series_uids: set[str]) -> int:
        """Instances prepared for these series of a study (known to this replica)."""
        return sum(
            1
            for key in list(self._index)
            if key[0] == form and key[1] == origin and key[2] == study_uid and key[3] in series_uids
        )

    @property
    def nbytes(self) -> int:
        """The store's total size, every replica's writes included (the ledger)."""
        return self._read_ledger() or 0

    def __len__(self) -> int:
        return len(self._index)

    # -- writing (in a thread) -------------------------------------------------------------

    def put(self, form: str, origin: str, instance: TranscodedInstance) -> None:
        """Keep one instance's served form; :class:`StoreFull` past the bound; ValueError
        for an instance whose SOP Instance UID is not a UID (it names the file)."""
        if len(instance.sop_uid) > 64 or not _UID.fullmatch(instance.sop_uid):
            raise ValueError("not a SOP Instance UID")
        raw, boundary, spans = _encode(instance, form, origin)
        key = (form, origin, instance.study_uid, instance.series_uid, instance.sop_uid)
        path = self._path(key)
        with self._ledger() as counted:
            total = counted or 0
            try:
                old = path.stat().st_size
            except OSError:
                old = 0
            growth = len(raw) - old
            if total + growth > self.max_bytes:
                raise StoreFull(f"prepared store full ({total} of {self.max_bytes} bytes)")
            self._write_ledger(total + growth)  # reserved now; given back if the write fails
        series_dir = path.parent
        tmp = series_dir / f".{instance.sop_uid}.{os.getpid()}.{threading.get_ident()}"
        try:
            series_dir.mkdir(exist_ok=True, mode=0o700)
            tmp.write_bytes(raw)
            os.replace(tmp, path)
            inode = os.stat(path).st_ino
        except OSError:
            with self._ledger() as counted:
                self._write_ledger((counted or 0) - growth)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._misses.pop(key, None)
        self._index[key] = _Entry(
            str(path),
            instance.transfer_syntax_uid,
            media_type_of(instance.transfer_syntax_uid, boundary),
            tuple((s[0], s[1], s[2], s[3]) for s in spans),
            len(raw),
            inode,
        )

    def complete(
        self,
        form: str,
        origin: str,
        study_uid: str,
        series_uid: str,
        facts: dict[str, dict[str, Any]],
    ) -> None:
        """Mark a series complete: every instance its stream delivered is prepared."""
        digest = series_digest(form, origin, study_uid, series_uid)
        series_dir = self.directory / digest
        series_dir.mkdir(exist_ok=True, mode=0o700)
        manifest = {"version": VERSION, "instances": facts}
        tmp = series_dir / f".{MANIFEST}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(json.dumps(manifest, separators=(",", ":")).encode())
        os.replace(tmp, series_dir / MANIFEST)
        self._complete[digest] = (os.stat(series_dir / MANIFEST).st_ino, facts)

    def drop_series(self, form: str, origin: str, study_uid: str, series_uid: str) -> int:
        """Forget a series and delete its files; the bytes freed."""
        digest = series_digest(form, origin, study_uid, series_uid)
        self._complete.pop(digest, None)
        for key in [k for k in self._index if k[:4] == (form, origin, study_uid, series_uid)]:
            self._index.pop(key, None)
        series_dir = self.directory / digest
        with self._ledger() as counted:
            freed = 0
            with contextlib.suppress(OSError):
                for path in series_dir.glob(f"*{SUFFIX}"):
                    with contextlib.suppress(OSError):
                        freed += path.stat().st_size
            shutil.rmtree(series_dir, ignore_errors=True)
            self._write_ledger((counted or 0) - freed)
        return freed
