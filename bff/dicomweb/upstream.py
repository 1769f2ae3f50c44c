"""Client for an upstream DICOMweb server (the PACS behind a location).

httpx failures are translated into :mod:`bff.errors` here, once, at the seam, both
around the request and inside the streamed body (STYLE.md point 5).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydicom.dataset import Dataset

from bff.errors import (
    IncompleteSeries,
    NotFound,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
    ViewerError,
)

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
#: What a series retrieval asks for: the stored syntax as-is, no transcoding upstream.
SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _auth_headers(auth: str) -> dict[str, str]:
    if not auth:
        return {}
    if auth.lower().startswith("bearer "):
        return {"Authorization": auth}
    token = base64.b64encode(auth.encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}


class ErrorPolicy:
    """How an upstream's failures become our errors. The PACS behind a location uses
    this one; a remote DRIMbox Source uses the Consumer's (Tableau 2 codes)."""

    def for_exception(self, exc: httpx.HTTPError, what: str) -> ViewerError:
        return translate(exc, what)

    def check_part(self, header: Dataset) -> None:
        """Refuse an instance received in a series stream (the PACS: accept everything)."""

    def for_status(self, status: int, what: str) -> ViewerError:
        if status == 404:
            return NotFound(f"{what}: upstream 404")
        return UpstreamError(f"{what}: upstream HTTP {status}")

    def broken_series(self, error: ViewerError, received: int) -> ViewerError:
        """What the frames a series stream never delivered fail with, once the stream
        failed with ``error`` after ``received`` instances: for a PACS, the series is
        incomplete (E506) once instances came, else the error itself."""
        return IncompleteSeries(error.detail) if received else error


def translate(exc: httpx.HTTPError, what: str) -> ViewerError:
    """Map an httpx failure to our error tree (the message never carries raw details)."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"{what}: {type(exc).__name__}")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnavailable(f"{what}: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return UpstreamProtocolError(f"{what}: {exc}")
    return UpstreamUnavailable(f"{what}: {type(exc).__name__}: {exc}")


#: Failures of a request that may come from a kept-alive connection the server closed
#: while it sat idle in the pool (Orthanc closes idle connections after 1 s by default;
#: the close can cross our next request on the wire). GETs are idempotent: such a
#: request is sent once more, on a fresh connection, before anything is answered.
STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
#: Attempts per request for those failures (timeouts are never retried: waits stay bounded).
ATTEMPTS = 2

#: How long an upstream search answer is shared (see DicomwebUpstream.search).
SEARCH_TTL_S = 10.0
MAX_SEARCHES = 256


def task_failed(task: asyncio.Task[Any]) -> bool:
    """Done with an error (or cancelled): a shared fetch to ask again."""
    return task.done() and (task.cancelled() or task.exception() is not None)


def _consume_exception(task: asyncio.Task[bytes]) -> None:
    if not task.cancelled():
        task.exception()


class DicomwebUpstream:
    """One upstream DICOMweb service. ``origin`` names it in cache keys and logs."""

    def __init__(
        self,
        base_url: str,
        *,
        origin: str,
        auth: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        series_accept: str = SERIES_ACCEPT,
        policy: ErrorPolicy | None = None,
        serve: str = "lossy",
        client: httpx.AsyncClient | None = None,
        keep_headers: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client``: a shared client (its connection pool and TLS settings) that this
        upstream uses without owning it; by default the upstream owns one.
        ``keep_headers``: keep the header of every instance streamed (a Source without
        /metadata: the Consumer builds the series metadata from them).
        ``clock``: what the shared searches' expiry is measured with (tests move it)."""
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self.series_accept = series_accept
        self.policy = policy or ErrorPolicy()
        #: How frames from this upstream are served (bff.transcode EncodeParams.serve).
        self.serve = serve
        self.keep_headers = keep_headers
        self._clock = clock
        self._headers = {**_auth_headers(auth), **(headers or {})}
        self._owns_client = client is None
        self._searches: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = {}
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
            verify=verify,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise self.policy.for_status(response.status_code, what)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def reachable(self) -> None:
        """One light QIDO-RS search (readiness warnings, bff/web/probes.py); raises
        when the service does not answer, or answers an error."""
        response = await self._client.get(
            self._url("/studies"),
            params={"limit": "1", "includefield": "0020000D"},
            headers={**self._headers, "Accept": DICOM_JSON},
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{self.origin}: HTTP {response.status_code}")

    def _url(self, path: str) -> str:
        return self.base_url + path

    async def _get(
        self, path: str, accept: str, params: Mapping[str, str] | None
    ) -> httpx.Response:
        what = f"GET {path}"
        response = await self._send(self._request(path, accept, params), what, stream=False)
        self._check(response, what)
        return response

    def _request(self, path: str, accept: str, params: Mapping[str, str] | None) -> httpx.Request:
        return self._client.build_request(
            "GET",
            self._url(path),
            params=dict(params or {}),
            headers={**self._headers, "Accept": accept},
        )

    async def _send(self, request: httpx.Request, what: str, *, stream: bool) -> httpx.Response:
        """Send ``request``, once more if the connection proved stale (STALE_CONNECTION)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._client.send(request, stream=stream)
            except STALE_CONNECTION as exc:
                if attempt == ATTEMPTS:
                    raise self.policy.for_exception(exc, what) from exc
                log.info("%s %s: %r, asked again", self.origin, what, exc)
            except httpx.HTTPError as exc:
                raise self.policy.for_exception(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def search(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """A QIDO-RS search (DICOM JSON rows), shared: the same search asked again within
        :data:`SEARCH_TTL_S` (OHIF repeats its study search, the page around it asks the
        series list too) gets the same upstream answer, parsed afresh for each caller.
        Callers check access before searching, as for every upstream call."""
        key = (path, tuple(sorted((params or {}).items())))
        now = self._clock()
        entry = self._searches.get(key)
        if entry is None or entry[0] < now or task_failed(entry[1]):
            for stale in [k for k, (expires, _) in self._searches.items() if expires < now]:
                del self._searches[stale]
            while len(self._searches) >= MAX_SEARCHES:
                del self._searches[next(iter(self._searches))]
            task = asyncio.create_task(self._search_bytes(path, params), name=f"qido {path}")
            task.add_done_callback(_consume_exception)
            entry = self._searches[key] = (now + SEARCH_TTL_S, task)
        raw = await asyncio.shield(entry[1])
        return json.loads(raw) if raw else []

    async def _search_bytes(self, path: str, params: Mapping[str, str] | None) -> bytes:
        response = await self._get(path, DICOM_JSON, params)
        if response.status_code == 204 or not response.content:
            return b""
        try:
            json.loads(response.content)
        except ValueError as exc:
            raise UpstreamProtocolError(f"GET {path}: invalid JSON") from exc
        return response.content

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET a DICOM JSON answer; 204 (no match) is an empty list."""
        response = await self._get(path, DICOM_JSON, params)
        if response.status_code == 204 or not response.content:
            return []
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamProtocolError(f"GET {path}: invalid JSON") from exc

    async def get_json_bounded(
        self, path: str, params: Mapping[str, str] | None = None, *, max_bytes: int
    ) -> Any:
        """GET a DICOM JSON answer of at most ``max_bytes`` (decoded): a larger one is
        refused as it streams (UpstreamProtocolError), never read whole. For answers
        from a PACS we only look things up in (DB.VI-CS.32)."""
        what = f"GET {path}"
        response = await self._send(self._request(path, DICOM_JSON, params), what, stream=True)
        try:
            self._check(response, what)
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise UpstreamProtocolError(f"{what}: answer over {max_bytes} bytes")
            except httpx.HTTPError as exc:
                raise self.policy.for_exception(exc, what) from exc
        finally:
            await response.aclose()
        if response.status_code == 204 or not body:
            return []
        try:
            return json.loads(body)
        except ValueError as exc:
            raise UpstreamProtocolError(f"{what}: invalid JSON") from exc

    async def get_json_bytes(self, path: str) -> bytes:
        """GET a DICOM JSON answer as its raw bytes (to be parsed off the event loop)."""
        response = await self._get(path, DICOM_JSON, None)
        if response.status_code == 204 or not response.content:
            return b"[]"
        return response.content

    async def get_bytes(
        self, path: str, accept: str, params: Mapping[str, str] | None = None
    ) -> tuple[str, bytes]:
        """GET a small binary answer (thumbnail, bulk data); returns (content type, body)."""
        response = await self._get(path, accept, params)
        return response.headers.get("content-type", "application/octet-stream"), response.content

    @asynccontextmanager
    async def stream(
        self, path: str, accept: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """Stream a (multipart) answer; yields its content type and a byte iterator.

        Errors while reading the body are translated too; leaving the block closes the
        upstream response (so a client going away stops the retrieval).
        """
        what = f"GET {path}"
        request = self._client.build_request(
            "GET", self._url(path), headers={**self._headers, "Accept": accept}
        )
        response = await self._send(request, what, stream=True)
        try:
            self._check(response, what)

            async def body() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                except httpx.HTTPError as exc:
                    raise self.policy.for_exception(exc, what) from exc

            yield response.headers.get("content-type", ""), body()
        finally:
            await response.aclose()
