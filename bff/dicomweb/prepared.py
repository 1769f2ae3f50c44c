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

Everything needed to answer is indexed in memory at :meth:`PreparedStore.open` (the
first lines only) and as instances are written; the total size is bounded: a write that
would pass it raises :class:`StoreFull` (a published exam is not evicted for another).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
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
#: Longest first line of an entry (its JSON header): a bound on what open() reads.
MAX_HEADER_BYTES = 1 << 20


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
        self._index: dict[tuple[str, str, str, str, str], _Entry] = {}
        self._complete: dict[str, dict[str, dict[str, Any]]] = {}  # digest -> facts
        self._total = 0
        self._lock = threading.Lock()  # writes run in threads

    # -- start ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory (private) and index what an earlier run left."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        for series_dir in self.directory.iterdir():
            if not series_dir.is_dir():
                continue
            manifest = self._read_manifest(series_dir)
            for path in series_dir.glob(f"*{SUFFIX}"):
                try:
                    self._index_file(path, manifest)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("prepared entry %s unreadable, dropped: %r", path.name, exc)
                    with contextlib.suppress(OSError):
                        path.unlink()
        log.info(
            "prepared store %s: %d instances, %d complete series, %d bytes",
            self.directory,
            len(self._index),
            len(self._complete),
            self._total,
        )

    def _read_manifest(self, series_dir: Path) -> dict[str, Any] | None:
        path = series_dir / MANIFEST
        if not path.exists():
            return None
        try:
            manifest: dict[str, Any] = json.loads(path.read_bytes())
            if manifest.get("version") != VERSION:
                raise ValueError("old version")
        except (OSError, ValueError) as exc:
            log.warning("prepared series %s unreadable, re-prepared: %r", series_dir.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._complete[series_dir.name] = manifest["instances"]
        return manifest

    def _index_file(self, path: Path, manifest: dict[str, Any] | None) -> None:
        with path.open("rb") as file:
            line = file.readline(MAX_HEADER_BYTES)
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
        # The header's spans count from the end of its own line.
        spans = tuple((len(line) + s[0], s[1], s[2], s[3]) for s in header["spans"])
        size = path.stat().st_size
        self._index[key] = _Entry(
            str(path),
            header["syntax"],
            media_type_of(header["syntax"], header["boundary"]),
            spans,
            size,
        )
        self._total += size

    # -- answering -------------------------------------------------------------------------

    def frame(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str, number: int
    ) -> PreparedFrame | None:
        """The prepared answer of one frame, or None (not prepared, or gone: the caller
        takes the live path). One small read from the page cache; no parsing."""
        entry = self._index.get((form, origin, study_uid, series_uid, sop_uid))
        if entry is None or not 0 < number <= len(entry.spans):
            return None
        offset, length, data_offset, data_length = entry.spans[number - 1]
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            return None
        try:
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
        entry = self._index.get((form, origin, study_uid, series_uid, sop_uid))
        return None if entry is None else len(entry.spans)

    def series_facts(
        self, form: str, origin: str, study_uid: str, series_uid: str
    ) -> dict[str, dict[str, Any]] | None:
        """Per SOP Instance UID, what was learnt preparing a complete series (the
        TranscodedInstance's fields but its frames, and ``n_frames``); None when the series
        is not (completely) prepared."""
        facts = self._complete.get(series_digest(form, origin, study_uid, series_uid))
        if facts is None:
            return None
        for sop_uid in facts:
            if (form, origin, study_uid, series_uid, sop_uid) not in self._index:
                return None  # an entry went missing: not prepared any more
        return facts

    def has_instance(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str
    ) -> bool:
        return (form, origin, study_uid, series_uid, sop_uid) in self._index

    def instance_facts(
        self, form: str, origin: str, study_uid: str, series_uid: str, sop_uid: str
    ) -> dict[str, Any] | None:
        """The facts of one prepared instance (read from its file's first line)."""
        entry = self._index.get((form, origin, study_uid, series_uid, sop_uid))
        if entry is None:
            return None
        try:
            with open(entry.path, "rb") as file:
                facts: dict[str, Any] = json.loads(file.readline(MAX_HEADER_BYTES))["facts"]
        except (OSError, ValueError, KeyError):
            return None
        return facts

    def count(self, form: str, origin: str, study_uid: str, series_uids: set[str]) -> int:
        """Instances prepared for these series of a study."""
        return sum(
            1
            for key in list(self._index)
            if key[0] == form and key[1] == origin and key[2] == study_uid and key[3] in series_uids
        )

    @property
    def nbytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._index)

    # -- writing (in a thread) -------------------------------------------------------------

    def put(self, form: str, origin: str, instance: TranscodedInstance) -> None:
        """Keep one instance's served form; :class:`StoreFull` past the bound."""
        raw, boundary, spans = _encode(instance, form, origin)
        key = (form, origin, instance.study_uid, instance.series_uid, instance.sop_uid)
        with self._lock:
            old = self._index.get(key)
            growth = len(raw) - (old.size if old is not None else 0)
            if self._total + growth > self.max_bytes:
                raise StoreFull(f"prepared store full ({self._total} of {self.max_bytes} bytes)")
            self._total += growth  # reserved now; given back if the write fails
        series_dir = self.directory / series_digest(
            form, origin, instance.study_uid, instance.series_uid
        )
        path = series_dir / f"{instance.sop_uid}{SUFFIX}"
        tmp = series_dir / f".{instance.sop_uid}.{os.getpid()}.{threading.get_ident()}"
        try:
            series_dir.mkdir(exist_ok=True, mode=0o700)
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        except OSError:
            with self._lock:
                self._total -= growth
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._index[key] = _Entry(
            str(path),
            instance.transfer_syntax_uid,
            media_type_of(instance.transfer_syntax_uid, boundary),
            tuple((s[0], s[1], s[2], s[3]) for s in spans),
            len(raw),
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
        self._complete[digest] = facts

    def drop_series(self, form: str, origin: str, study_uid: str, series_uid: str) -> int:
        """Forget a series and delete its files; the bytes freed."""
        digest = series_digest(form, origin, study_uid, series_uid)
        self._complete.pop(digest, None)
        freed = 0
        with self._lock:
            for key in [k for k in self._index if k[:4] == (form, origin, study_uid, series_uid)]:
                freed += self._index.pop(key).size
            self._total -= freed
        shutil.rmtree(self.directory / digest, ignore_errors=True)
        return freed
