"""A kept-alive upstream connection the server closed while it sat idle: the request is
sent once more on a fresh connection, never more than that, never for timeouts.

Orthanc closes idle connections after 1 s; when that close crosses our next request, the
request fails with "Server disconnected without sending a response" (seen as a 502 on
OHIF's study search in CI). A real HTTP/1.1 server over TCP plays the server here: the
fault is a timing race a real PACS cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import UpstreamError
from bff.origins.conformance import ConsumerErrorPolicy
from bff.origins.errors import SourceError


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 2\r\n\r\n[]"


@asynccontextmanager
async def http_server(
    answer: Callable[[int], bytes | None], *, hold: float = 0
) -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server: the n-th request read gets ``answer(n)``; None closes the
    connection without a byte of response. ``hold``: wait before answering."""
    seen: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            seen.append(len(seen) + 1)
            body = answer(len(seen))
            if hold:
                await asyncio.sleep(hold)
            if body is not None:
                writer.write(body)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/dicom-web", seen
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_a_dropped_connection_is_asked_again_once() -> None:
    async with http_server(lambda n: None if n == 1 else OK) as (url, seen):
        upstream = DicomwebUpstream(url, origin="pacs")
        assert await upstream.get_json("/studies") == []
        await upstream.aclose()
    assert seen == [1, 2]


@pytest.mark.anyio
async def test_the_stream_is_asked_again_too() -> None:
    async with http_server(lambda n: None if n == 1 else OK) as (url, seen):
        upstream = DicomwebUpstream(url, origin="pacs")
        async with upstream.stream("/studies/1/series/2", "multipart/related") as (_, body):
            assert b"".join([chunk async for chunk in body]) == b"[]"
        await upstream.aclose()
    assert seen == [1, 2]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "error", "code"),
    [(None, UpstreamError, "E505"), (ConsumerErrorPolicy(), SourceError, "E201")],
    ids=["pacs", "source-for-the-consumer"],
)
async def test_a_server_that_keeps_dropping_gets_an_error_after_two_attempts(
    policy: ConsumerErrorPolicy | None, error: type[Exception], code: str
) -> None:
    async with http_server(lambda n: None) as (url, seen):
        upstream = DicomwebUpstream(url, origin="upstream", policy=policy)
        with pytest.raises(error) as raised:
            await upstream.search("/studies")
        await upstream.aclose()
    assert seen == [1, 2]
    assert getattr(raised.value, "code", None) == code


@pytest.mark.anyio
async def test_a_timeout_is_not_retried() -> None:
    async with http_server(lambda n: OK, hold=1.0) as (url, seen):
        upstream = DicomwebUpstream(url, origin="pacs", read_timeout=0.2)
        with pytest.raises(UpstreamError):
            await upstream.get_json("/studies")
        await upstream.aclose()
    assert seen == [1]
