"""The one reader of a series stream: a WADO-RS multipart answer, parsed as it arrives.

Every consumer of a series (the facade's retrieval, the ZIP export, the Source API that
answers Consumer DRIMboxes) opens it here, so a malformed answer is the same error
whoever reads it: transport failures are translated by the upstream's error policy
(:mod:`bff.dicomweb.upstream`), and a content type that is not ``multipart/related`` or
a body that breaks the multipart grammar is :class:`~bff.errors.UpstreamProtocolError`
(E505), raised from the iterator itself (STYLE.md point 5). The caller maps it to its
own protocol at its seam (the retrieval to E506 once instances came, the Source API to
its Tableau 2 statuses).

Leaving the ``async with`` block closes the upstream response, so a client that goes
away stops the retrieval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bff.dicomweb.multipart import MultipartError, MultipartParser, Part, parse_content_type
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import UpstreamProtocolError


def series_path(study_uid: str, series_uid: str, sop_uid: str | None = None) -> str:
    """The WADO-RS path of a series (or of one of its instances)."""
    path = f"/studies/{study_uid}/series/{series_uid}"
    return path + f"/instances/{sop_uid}" if sop_uid else path


def _boundary(content_type: str) -> str:
    try:
        media_type, params = parse_content_type(content_type)
    except MultipartError as exc:
        raise UpstreamProtocolError(f"bad content type {content_type!r}") from exc
    boundary = params.get("boundary")
    if media_type != "multipart/related" or not boundary:
        raise UpstreamProtocolError(f"not multipart/related: {content_type!r}")
    return boundary


async def _parts(
    chunks: AsyncIterator[bytes], parser: MultipartParser, what: str
) -> AsyncIterator[Part]:
    try:
        async for chunk in chunks:
            for part in parser.feed(chunk):
                yield part
        parser.finalize()
    except MultipartError as exc:
        raise UpstreamProtocolError(f"{what}: multipart: {exc}") from exc


@asynccontextmanager
async def series_parts(
    upstream: DicomwebUpstream,
    path: str,
    *,
    max_part_bytes: int,
    accept: str | None = None,
) -> AsyncIterator[AsyncIterator[Part]]:
    """Open ``path`` on ``upstream`` and yield an iterator of its parts (instances).

    ``accept`` defaults to what the upstream asks for series (the stored syntax from a
    PACS; the DRIM-M syntaxes and q-values from a remote Source)."""
    async with upstream.stream(path, accept or upstream.series_accept) as (content_type, body):
        parser = MultipartParser(_boundary(content_type), max_part_bytes=max_part_bytes)
        yield _parts(body, parser, f"GET {path}")
