"""Incremental ``multipart/related`` parser (no I/O) and a small writer.

A series-level WADO-RS answer is ``multipart/related; type="application/dicom"`` and can
weigh hundreds of megabytes; :class:`MultipartParser` is fed the byte stream chunk by
chunk and hands back each part (one DICOM instance) as soon as the delimiter that closes
it has been seen, so instances can be transcoded while the rest of the series is still on
the wire (DB.VI-CS.17). The parser does no I/O; its limits are constructor arguments.

Grammar followed (RFC 2046 section 5.1.1, RFC 2387)::

    preamble CRLF "--" boundary *(SP / HTAB) CRLF      <- first delimiter
      headers CRLF CRLF body
    CRLF "--" boundary *(SP / HTAB) CRLF                <- next part
      ...
    CRLF "--" boundary "--" epilogue                    <- close

The preamble and the epilogue are ignored. Line ends are strict CRLF, except that the
CRLF before the very first delimiter may be missing (no preamble), which is what most
servers send. As RFC 2046 allows, a delimiter is recognised as soon as CRLF "--" boundary
appears in full; what follows it must be transport padding then CRLF, or "--".

:class:`MultipartError` says the input is malformed or a limit was exceeded; the upstream
client translates it into :class:`bff.errors.UpstreamProtocolError` at the seam.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import Enum, auto

__all__ = [
    "MultipartError",
    "MultipartParser",
    "Part",
    "closing_delimiter",
    "encode_part",
    "new_boundary",
    "parse_content_type",
    "parse_disposition",
]

_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"
_PADDING = b" \t"
# RFC 2046 caps boundaries at 70 characters; some servers exceed it, so be lenient.
_MAX_BOUNDARY_LENGTH = 200
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class MultipartError(ValueError):
    """Malformed multipart input, or a size / count limit exceeded."""


# --------------------------------------------------------------------------- content type


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lower-cased media type and its parameters.

    ``'multipart/related; type="application/dicom"; boundary=abc'`` gives
    ``("multipart/related", {"type": "application/dicom", "boundary": "abc"})``.
    Parameter names are lower-cased, values keep their case (a boundary is case-sensitive)
    and quoted values are unquoted (``\\"`` and ``\\\\`` escapes). Raises
    :class:`MultipartError` on anything that is not ``type/subtype *(; name=value)``.
    """
    semicolon = value.find(";")
    media_type = (value if semicolon < 0 else value[:semicolon]).strip().lower()
    main, slash, sub = media_type.partition("/")
    if not slash or not _TOKEN.fullmatch(main) or not _TOKEN.fullmatch(sub):
        raise MultipartError("invalid media type in Content-Type")
    return media_type, _parameters(value, len(value) if semicolon < 0 else semicolon)


def parse_disposition(value: str) -> tuple[str, dict[str, str]]:
    """Split a part's Content-Disposition (RFC 7578: a form's part) like
    :func:`parse_content_type`: ``'form-data; name="kos"; filename="a.dcm"'`` gives
    ``("form-data", {"name": "kos", "filename": "a.dcm"})``."""
    semicolon = value.find(";")
    kind = (value if semicolon < 0 else value[:semicolon]).strip().lower()
    if not _TOKEN.fullmatch(kind):
        raise MultipartError("invalid Content-Disposition")
    return kind, _parameters(value, len(value) if semicolon < 0 else semicolon)


def _parameters(value: str, pos: int) -> dict[str, str]:
    """The ``*(; name=value)`` parameters of a header value, from ``value[pos]``."""
    params: dict[str, str] = {}
    end = len(value)
    while pos < end:
        # Here value[pos] is ";" (possibly one of several, or a trailing one).
        pos = _skip_spaces(value, pos + 1)
        if pos >= end:
            break
        if value[pos] == ";":
            continue
        match = _TOKEN.match(value, pos)
        if match is None:
            raise MultipartError("invalid header parameter name")
        name = match.group().lower()
        pos = _skip_spaces(value, match.end())
        if pos >= end or value[pos] != "=":
            raise MultipartError("header parameter without '='")
        pos = _skip_spaces(value, pos + 1)
        if pos < end and value[pos] == '"':
            param_value, pos = _read_quoted(value, pos)
        else:
            stop = value.find(";", pos)
            stop = end if stop < 0 else stop
            param_value = value[pos:stop].strip()
            if not param_value or any(c in param_value for c in ' \t"\\'):
                raise MultipartError("invalid unquoted header parameter value")
            pos = stop
        pos = _skip_spaces(value, pos)
        if pos < end and value[pos] != ";":
            raise MultipartError("unexpected characters after a header parameter")
        if name in params:
            raise MultipartError("duplicate header parameter")
        params[name] = param_value
    return params


def _skip_spaces(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    return pos


def _read_quoted(value: str, pos: int) -> tuple[str, int]:
    """Read the quoted-string starting at ``value[pos] == '"'``; return it and the next index."""
    chars: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos >= len(value):
                break
            char = value[pos]
        chars.append(char)
        pos += 1
    raise MultipartError("unterminated quoted string in Content-Type")


# --------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Part:
    """One body part: its headers (lower-cased names) and its body."""

    headers: dict[str, str]
    body: bytes


class _State(Enum):
    PREAMBLE = auto()  # looking for the first delimiter
    DELIMITER = auto()  # just after a boundary: padding then CRLF, or "--"
    HEADERS = auto()  # looking for the blank line that ends the part's headers
    BODY = auto()  # looking for the delimiter that ends the part's body
    DONE = auto()  # closing delimiter seen: the rest is epilogue


class MultipartParser:
    """Feed a multipart body chunk by chunk; get complete parts back as they end.

    Bytes live in one internal ``bytearray`` searched with ``find`` from a scan offset
    that only moves forward, so each byte is examined a bounded number of times whatever
    the chunking; consumed bytes are dropped at the end of each :meth:`feed`. Each body
    is copied once, into the :class:`Part`. After a :class:`MultipartError` the parser
    is unusable: every later call raises again.
    """

    def __init__(
        self,
        boundary: str | bytes,
        *,
        max_part_bytes: int,
        max_header_bytes: int = 16384,
        max_parts: int | None = None,
    ) -> None:
        raw = _boundary_bytes(boundary)
        if max_part_bytes < 0 or max_header_bytes < 0 or (max_parts is not None and max_parts < 0):
            raise ValueError("multipart limits must not be negative")
        self._delimiter = _CRLF + b"--" + raw
        self._max_part_bytes = max_part_bytes
        self._max_header_bytes = max_header_bytes
        self._max_parts = max_parts
        # A virtual CRLF in front of the stream lets "--boundary" at offset 0 match the
        # same pattern as every later delimiter.
        self._buffer = bytearray(_CRLF)
        self._state = _State.PREAMBLE
        self._start = 0  # start of what the current state still needs
        self._scan = 0  # where the next search starts (never before _start)
        self._headers: dict[str, str] = {}
        self._parts_done = 0
        self._error: MultipartError | None = None

    @property
    def parts_done(self) -> int:
        """How many complete parts have been returned so far."""
        return self._parts_done

    def feed(self, data: bytes | bytearray | memoryview) -> list[Part]:
        """Add bytes; return the parts completed by them (often none)."""
        if self._error is not None:
            raise self._error
        if self._state is _State.DONE:
            return []  # epilogue
        self._buffer += data
        try:
            parts = self._advance()
        except MultipartError as exc:
            self._fail(exc)
            raise
        if self._start:
            del self._buffer[: self._start]  # CPython makes front deletion cheap
            self._scan -= self._start
            self._start = 0
        return parts

    def finalize(self) -> None:
        """Call at end of stream: raise :class:`MultipartError` if it was cut short."""
        if self._error is not None:
            raise self._error
        if self._state is not _State.DONE:
            exc = MultipartError(
                f"multipart stream ended before its closing delimiter "
                f"({self._parts_done} complete parts)"
            )
            self._fail(exc)
            raise exc

    def _fail(self, exc: MultipartError) -> None:
        self._error = exc
        self._buffer = bytearray()
        self._start = self._scan = 0

    def _advance(self) -> list[Part]:
        parts: list[Part] = []
        while True:
            if self._state is _State.PREAMBLE:
                if not self._find_delimiter():
                    # Preamble: keep only what could be the start of the delimiter.
                    self._start = self._scan
                    return parts
            elif self._state is _State.DELIMITER:
                if not self._after_delimiter():
                    return parts
            elif self._state is _State.HEADERS:
                if not self._read_headers():
                    return parts
            elif self._state is _State.BODY:
                body_start = self._start
                if not self._find_delimiter():
                    known = self._scan - body_start  # bytes that cannot be a delimiter
                    if known > self._max_part_bytes:
                        raise MultipartError(f"multipart part exceeds {self._max_part_bytes} bytes")
                    self._start = body_start
                    return parts
                body_end = self._start - len(self._delimiter)
                if body_end - body_start > self._max_part_bytes:
                    raise MultipartError(f"multipart part exceeds {self._max_part_bytes} bytes")
                with memoryview(self._buffer) as view:
                    body = view[body_start:body_end].tobytes()
                parts.append(Part(self._headers, body))
                self._headers = {}
                self._parts_done += 1
            else:  # DONE
                self._buffer = bytearray()
                self._start = self._scan = 0
                return parts

    def _find_delimiter(self) -> bool:
        """Search the delimiter from the scan offset; on success go to DELIMITER."""
        found = self._buffer.find(self._delimiter, self._scan)
        if found < 0:
            # Any match must start in the last len(delimiter) - 1 bytes.
            self._scan = max(self._scan, len(self._buffer) - len(self._delimiter) + 1)
            return False
        self._start = self._scan = found + len(self._delimiter)
        self._state = _State.DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        """Read what follows a boundary: "--" (close), or padding then CRLF (a part)."""
        buffer, pos = self._buffer, self._start
        if len(buffer) - pos < 2:
            return False
        if buffer[pos : pos + 2] == b"--":
            self._state = _State.DONE
            return True
        while pos < len(buffer) and buffer[pos] in _PADDING:
            pos += 1
        if pos - self._start > self._max_header_bytes:
            raise MultipartError("too much transport padding after a multipart boundary")
        if len(buffer) - pos < 2:
            return False
        if buffer[pos : pos + 2] != _CRLF:
            raise MultipartError("multipart boundary followed by unexpected bytes")
        if self._max_parts is not None and self._parts_done >= self._max_parts:
            raise MultipartError(f"multipart stream has more than {self._max_parts} parts")
        # Start the header search at the delimiter line's own CRLF so that a part with
        # no headers (CRLF CRLF right away) is found by the same search.
        self._start = self._scan = pos
        self._state = _State.HEADERS
        return True

    def _read_headers(self) -> bool:
        buffer = self._buffer
        found = buffer.find(_HEADERS_END, self._scan)
        if found < 0:
            self._scan = max(self._scan, len(buffer) - len(_HEADERS_END) + 1)
            if len(buffer) - 1 - (self._start + 2) > self._max_header_bytes:
                raise MultipartError(f"multipart headers exceed {self._max_header_bytes} bytes")
            return False
        header_start = self._start + 2
        if found + 2 - header_start > self._max_header_bytes:
            raise MultipartError(f"multipart headers exceed {self._max_header_bytes} bytes")
        self._headers = _parse_headers(bytes(buffer[header_start:found]))
        self._start = self._scan = found + len(_HEADERS_END)
        self._state = _State.BODY
        return True


def _boundary_bytes(boundary: str | bytes) -> bytes:
    try:
        raw = boundary.encode("ascii") if isinstance(boundary, str) else bytes(boundary)
    except UnicodeEncodeError:
        raise MultipartError("multipart boundary is not ASCII") from None
    if not raw or len(raw) > _MAX_BOUNDARY_LENGTH or b"\r" in raw or b"\n" in raw:
        raise MultipartError("invalid multipart boundary")
    return raw


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    if not block:
        return headers
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and last:  # obsolete line folding
            headers[last] = f"{headers[last]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not _TOKEN.fullmatch(name):
            raise MultipartError("malformed multipart part header")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    return headers


# --------------------------------------------------------------------------- writer


def new_boundary() -> str:
    """A random boundary: 48 hex digits, which cannot occur by chance in a body."""
    return secrets.token_hex(24)


def encode_part(
    body: bytes,
    content_type: str,
    boundary: str,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """One part, delimiter first: ``--b CRLF headers CRLF CRLF body CRLF``.

    The trailing CRLF belongs to the next delimiter, so a stream is the parts one after
    the other followed by :func:`closing_delimiter`. Raises ``ValueError`` on a header
    name or value that would break the framing (CR, LF, non-ASCII).
    """
    raw_boundary = _writer_boundary(boundary)
    lines = [b"--" + raw_boundary, _header_line("Content-Type", content_type)]
    for name, value in (extra_headers or {}).items():
        lines.append(_header_line(name, value))
    return b"".join((_CRLF.join(lines), _HEADERS_END, body, _CRLF))


def closing_delimiter(boundary: str) -> bytes:
    """The end of a multipart stream: ``--b-- CRLF``."""
    return b"--" + _writer_boundary(boundary) + b"--" + _CRLF


def _writer_boundary(boundary: str) -> bytes:
    try:
        return _boundary_bytes(boundary)
    except MultipartError as exc:
        raise ValueError(str(exc)) from None


def _header_line(name: str, value: str) -> bytes:
    if not _TOKEN.fullmatch(name):
        raise ValueError("invalid multipart header name")
    if "\r" in value or "\n" in value or not value.isascii():
        raise ValueError("invalid multipart header value")
    return f"{name}: {value}".encode("ascii")
