"""Request bodies read within bounds, and the KOS they carry (issue 13).

:mod:`bff.web.limits` caps every body on the wire; the routes read theirs here, never
with an unbounded ``request.body()``:

- :func:`small_form`: the small urlencoded forms (login, logout), Starlette's parser
  with its limits (no file, a few short fields);
- :func:`read_body`: a body read as it arrives, refused (413 E440) as soon as it passes
  its limit, so no more than the limit plus one chunk is ever held;
- :func:`read_upload_form`: the Consumer's opening form (a KOS file and short fields), read
  with :func:`read_body`, then parsed off the event loop by the project's own multipart
  parser (:mod:`bff.dicomweb.multipart`: headers of a part at most 4 KiB, a few parts);
- :func:`read_kos_upload`: a KOS parsed in a worker thread, its failures translated
  once: a deflated KOS is E441 (never inflated), any other unusable KOS E400.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request

from bff.archive.kos import DeflatedKos, KosError, KosRecord, read_kos
from bff.dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    parse_content_type,
    parse_disposition,
)
from bff.errors import BadRequest, PayloadTooLarge, UnsupportedTransferSyntax

#: Fields of a form, file parts included: our forms have at most four.
MAX_FORM_FIELDS = 8
#: Longest text field of a form (a CSRF token, a UID, a profile name).
MAX_FIELD_BYTES = 1024
#: Longest header block of one part of an upload form.
MAX_PART_HEADER_BYTES = 4096

URLENCODED = "application/x-www-form-urlencoded"
FORM_DATA = "multipart/form-data"


async def small_form(request: Request) -> FormData:
    """A small form without files (login, logout), parsed with Starlette's limits."""
    return await request.form(
        max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 E440 once it passes ``limit`` bytes (or when
    its Content-Length says it will)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Content-Length {declared} over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
    return bytes(body)


@dataclass(frozen=True)
class UploadForm:
    """A form's text fields, and its file parts' bytes, by field name."""

    fields: dict[str, str]
    files: dict[str, bytes]


async def read_upload_form(
    request: Request, *, max_file_bytes: int, max_form_bytes: int
) -> UploadForm:
    """A form that may carry one file of at most ``max_file_bytes`` (multipart/form-data)
    or none (urlencoded, at most ``max_form_bytes``); parsed in a worker thread."""
    content_type = request.headers.get("content-type", "")
    try:
        media_type, params = parse_content_type(content_type)
    except MultipartError as exc:
        raise BadRequest("form without a usable Content-Type") from exc
    if media_type == URLENCODED:
        body = await read_body(request, max_form_bytes)
        return await run_in_threadpool(parse_urlencoded, body)
    if media_type != FORM_DATA or not params.get("boundary"):
        raise BadRequest(f"not a form: {media_type[:40]!r}")
    body = await read_body(request, max_file_bytes + max_form_bytes)
    return await run_in_threadpool(
        parse_form_data, body, params["boundary"], max_file_bytes=max_file_bytes
    )


def parse_urlencoded(body: bytes) -> UploadForm:
    """An ``application/x-www-form-urlencoded`` body: fields only, each used once."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed urlencoded form: {type(exc).__name__}") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields or len(value) > MAX_FIELD_BYTES:
            raise BadRequest("form field repeated or too long")
        fields[name] = value
    return UploadForm(fields, {})


def parse_form_data(body: bytes, boundary: str, *, max_file_bytes: int) -> UploadForm:
    """A ``multipart/form-data`` body (RFC 7578): a part with a ``filename`` is a file
    (at most ``max_file_bytes``, else 413 E440), the others text fields (UTF-8, at most
    :data:`MAX_FIELD_BYTES`); each name once. Any malformation is :class:`BadRequest`."""
    try:
        parser = MultipartParser(
            boundary,
            max_part_bytes=len(body),  # the body is bounded; each part's kind below
            max_header_bytes=MAX_PART_HEADER_BYTES,
            max_parts=MAX_FORM_FIELDS,
        )
        parts = parser.feed(body)
        parser.finalize()
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for part in parts:
            kind, params = parse_disposition(part.headers.get("content-disposition", ""))
            name = params.get("name")
            if kind != "form-data" or name is None or name in fields or name in files:
                raise BadRequest("form part without a name, or repeated")
            if "filename" in params:
                if len(part.body) > max_file_bytes:
                    raise PayloadTooLarge(f"file part over {max_file_bytes} bytes")
                files[name] = part.body
            elif len(part.body) > MAX_FIELD_BYTES:
                raise BadRequest("form field too long")
            else:
                fields[name] = part.body.decode("utf-8")
    except (MultipartError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed multipart form: {exc}") from exc
    return UploadForm(fields, files)


async def read_kos_upload(body: bytes) -> KosRecord:
    """Parse a received KOS in a worker thread (DB.VI-CS.05; the admin API's DB.SO.22)."""
    if not body:
        raise BadRequest("empty KOS")
    try:
        return await run_in_threadpool(read_kos, body)
    except DeflatedKos as exc:
        raise UnsupportedTransferSyntax(f"KOS refused: {exc}") from exc
    except KosError as exc:
        raise BadRequest(f"not a usable KOS: {exc}") from exc
