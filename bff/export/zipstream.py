"""A streaming ZIP writer (no I/O): STORED entries, CRC-32, ZIP64 when needed.

Why our own and not :mod:`zipfile`: every entry of a study download is fully in memory
when it is written (one DICOM instance, the DICOMDIR, a text file), so its size and
CRC-32 are known before its local header; the simplest correct archive is then a local
header with the real sizes, the bytes, and at the end the central directory. No data
descriptors, no seeking, no compression (instances are already losslessly compressed:
deflate would burn CPU for a few percent). :mod:`zipfile` can write to an unseekable
stream, but through a synchronous file object and with data descriptors; this module
just returns bytes, which an async generator yields as they are made.

ZIP64 (APPNOTE 6.3.x section 4.5.3) is used per entry when its size or its local header
offset do not fit in 32 bits, and for the end records when the archive, the central
directory or the entry count outgrow the classic fields. ``zip64_limit`` exists so tests
can force those paths on a small archive.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

__all__ = ["ZipWriter"]

_LIMIT32 = 0xFFFFFFFF
_LIMIT16 = 0xFFFF
_VERSION_CLASSIC = 20  # 2.0: stored entries, directories
_VERSION_ZIP64 = 45  # 4.5: ZIP64 extensions
_UTF8_FLAG = 0x0800  # names are UTF-8 (ours are ASCII: never set in practice)
_DOS_DIRECTORY = 0x10


def _dos_time(timestamp: float) -> tuple[int, int]:
    t = time.localtime(timestamp)
    year = max(1980, t.tm_year)
    dos_date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return dos_time, dos_date


@dataclass(frozen=True)
class _Entry:
    name: bytes
    flags: int
    crc: int
    size: int
    offset: int
    external_attributes: int


class ZipWriter:
    """Build a ZIP archive piece by piece; each method returns the bytes to send next."""

    def __init__(self, *, mtime: float | None = None, zip64_limit: int = _LIMIT32) -> None:
        self._time, self._date = _dos_time(time.time() if mtime is None else mtime)
        self._limit = zip64_limit
        self._entries: list[_Entry] = []
        self._offset = 0
        self._finished = False

    @property
    def offset(self) -> int:
        """Bytes produced so far."""
        return self._offset

    def directory(self, name: str) -> bytes:
        """An explicit directory entry (``name`` ends with ``/``)."""
        if not name.endswith("/"):
            raise ValueError("a directory name ends with '/'")
        return b"".join(self.file(name, b"", external_attributes=_DOS_DIRECTORY))

    def file(self, name: str, data: bytes, *, external_attributes: int = 0) -> tuple[bytes, bytes]:
        """One stored file: returns (local header, data) so the caller need not copy the
        data into a new buffer."""
        if self._finished:
            raise RuntimeError("the archive is finished")
        raw_name = name.encode("utf-8")
        flags = 0 if raw_name.isascii() else _UTF8_FLAG
        crc = zlib.crc32(data) & _LIMIT32
        size = len(data)
        entry = _Entry(raw_name, flags, crc, size, self._offset, external_attributes)
        zip64 = size >= self._limit
        extra = struct.pack("<HHQQ", 0x0001, 16, size, size) if zip64 else b""
        header = struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            _VERSION_ZIP64 if zip64 else _VERSION_CLASSIC,
            flags,
            0,  # stored
            self._time,
            self._date,
            crc,
            _LIMIT32 if zip64 else size,
            _LIMIT32 if zip64 else size,
            len(raw_name),
            len(extra),
        )
        header += raw_name + extra
        self._entries.append(entry)
        self._offset += len(header) + size
        return header, data

    def finish(self) -> bytes:
        """The central directory and end records (ZIP64 ones when needed)."""
        if self._finished:
            raise RuntimeError("the archive is finished")
        self._finished = True
        start = self._offset
        central = bytearray()
        for entry in self._entries:
            central += self._central_header(entry)
        size = len(central)
        count = len(self._entries)
        tail = bytearray(central)
        end_offset = start + size
        if count >= _LIMIT16 or start >= self._limit or size >= self._limit:
            tail += struct.pack(
                "<IQHHIIQQQQ",
                0x06064B50,
                44,
                _VERSION_ZIP64,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                size,
                start,
            )
            tail += struct.pack("<IIQI", 0x07064B50, 0, end_offset, 1)
            count16 = _LIMIT16 if count >= _LIMIT16 else count
            tail += struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                count16,
                count16,
                _LIMIT32 if size >= self._limit else size,
                _LIMIT32 if start >= self._limit else start,
                0,
            )
        else:
            tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, start, 0)
        self._offset += len(tail)
        return bytes(tail)

    def _central_header(self, entry: _Entry) -> bytes:
        values: list[int] = []
        size_field = entry.size
        offset_field = entry.offset
        if entry.size >= self._limit:
            values += [entry.size, entry.size]
            size_field = _LIMIT32
        if entry.offset >= self._limit:
            values.append(entry.offset)
            offset_field = _LIMIT32
        extra = (
            struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values) if values else b""
        )
        version = _VERSION_ZIP64 if values else _VERSION_CLASSIC
        header = struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            version,  # made by: MS-DOS attributes, this version
            version,
            entry.flags,
            0,
            self._time,
            self._date,
            entry.crc,
            size_field,
            size_field,
            len(entry.name),
            len(extra),
            0,
            0,
            0,
            entry.external_attributes,
            offset_field,
        )
        return header + entry.name + extra
