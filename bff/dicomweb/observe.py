"""What every upstream call carries and reports (issue 15 item 4), at the one place all
of them pass: the HTTP transport under the PACS client and under the Consumer's client
towards Sources.

- the request id of the request being served (bff/requestid.py) goes out as
  ``X-Request-ID``, so that a PACS's or a Source's log can be matched with ours;
- every failure is reported to ``on_error(upstream, code)``: the HTTP status of an
  error answer (``"404"``, ``"503"``) or the kind of transport failure (``"connect"``,
  ``"timeout"``, ``"tls"``, ``"protocol"``), for the metrics' upstream errors by code.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from bff.requestid import current_request_id

ErrorSink = Callable[[str, str], None]


def failure_kind(exc: BaseException) -> str:
    """A low-cardinality name for a transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError) or "SSL" in type(cause).__name__:
        return "tls"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.ProtocolError | httpx.ReadError | httpx.WriteError):
        return "protocol"
    return "other"


class ObservedTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner``: adds the request id, reports failures as ``upstream``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, upstream: str, on_error: ErrorSink):
        self.inner = inner
        self.upstream = upstream
        self.on_error = on_error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_id = current_request_id()
        if request_id is not None and "x-request-id" not in request.headers:
            request.headers["X-Request-ID"] = request_id
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self.on_error(self.upstream, failure_kind(exc))
            raise
        if response.status_code >= 400:
            self.on_error(self.upstream, str(response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
