"""The outermost middleware (issue 15 item 4): request id, access log, request metrics,
the probes and, where allowed, ``/metrics``.

It runs before the trusted-host check on purpose: a balancer probes ``/livez`` and
``/readyz`` with whatever Host it likes (often an address), and their answers hold
nothing a host name could change (no URL, no session). ``/metrics`` is answered here
only when :meth:`bff.settings.Settings.metrics_on_main_listener` says so (demo mode
without a metrics listener); otherwise it falls through to the application (404) and
is served by the internal listener (:func:`operations_app`) only.

Per request: the id from a well-formed ``X-Request-ID`` or a new one (bff/requestid.py),
current while the request is served and echoed in the response; one access log line
(``bff.access``: method, path without its query string, route family, status, bytes,
duration, client address) and one latency observation by route family. Probe and
metrics requests are neither logged at INFO nor counted in flight (the drain waits for
real requests only).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bff.logs import ACCESS_LOGGER, access_message
from bff.requestid import (
    HEADER,
    accept_or_new,
    bind_request_id,
    current_request_id,
    reset_request_id,
)
from bff.web.drain import Drain
from bff.web.metrics import CONTENT_TYPE, Metrics, route_family
from bff.web.probes import Readiness, answer

access_log = logging.getLogger(ACCESS_LOGGER)


@dataclass
class Operations:
    """What the probes and metrics read: built by create_app, completed by the lifespan
    (``readiness``)."""

    metrics: Metrics = field(default_factory=Metrics)
    drain: Drain = field(default_factory=Drain)
    readiness: Readiness | None = None
    #: /metrics on the main listener (demo mode without a metrics listener only)
    metrics_public: bool = False


async def _send_body(
    send: Send, status: int, body: bytes, content_type: str, request_id: str
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def answer_probe(ops: Operations, path: str, send: Send, request_id: str) -> bool:
    """Answer ``path`` if it is a probe (or /metrics, the caller decides); else False."""
    if path == "/livez":
        await _send_body(send, 200, b'{"status":"alive"}', "application/json", request_id)
        return True
    if path == "/readyz":
        draining = ops.drain.draining
        result = None
        if not draining and ops.readiness is not None:
            result = await ops.readiness.result()
        status, body = answer(result, draining=draining)
        await _send_body(send, status, json.dumps(body).encode(), "application/json", request_id)
        return True
    if path == "/metrics":
        await _send_body(send, 200, ops.metrics.exposition(), CONTENT_TYPE, request_id)
        return True
    return False


class Observe:
    def __init__(self, app: ASGIApp, *, ops: Operations) -> None:
        self.app = app
        self.ops = ops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        request_id = accept_or_new(Headers(scope=scope).get(HEADER))
        token = bind_request_id(request_id)
        try:
            if path in ("/livez", "/readyz") or (path == "/metrics" and self.ops.metrics_public):
                await answer_probe(self.ops, path, send, request_id)
                return
            await self._observed(scope, receive, send, path, request_id)
        finally:
            reset_request_id(token)

    async def _observed(
        self, scope: Scope, receive: Receive, send: Send, path: str, request_id: str
    ) -> None:
        started = time.monotonic()
        status = 500  # what an exception before the response start becomes
        sent = 0
        header = (b"x-request-id", request_id.encode())

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), header]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        metrics, drain = self.ops.metrics, self.ops.drain
        metrics.in_flight.inc()
        drain.entered()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            drain.left()
            metrics.in_flight.dec()
            duration = time.monotonic() - started
            route = route_family(path)
            metrics.observe_request(route, scope.get("method", "GET"), status, duration)
            _log_access(scope, path, route, status, sent, duration)


def _log_access(
    scope: Scope, path: str, route: str, status: int, sent: int, duration: float
) -> None:
    client = scope.get("client")
    fields = {
        "method": scope.get("method", "?"),
        # The path only, never the query string (OIDC code and state on /auth/callback).
        "path": path[:512],
        "route": route,
        "status": status,
        "bytes": sent,
        "duration_ms": round(duration * 1000, 1),
        "client": client[0] if client else None,
        "request_id": current_request_id(),
    }
    access_log.info(access_message(fields), extra={"access": fields})


def operations_app(ops: Operations) -> ASGIApp:
    """The internal listener's application (DRIMBOX_METRICS_PORT): /metrics, /livez,
    /readyz; everything else 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = accept_or_new(Headers(scope=scope).get(HEADER))
        if not await answer_probe(ops, scope.get("path", ""), send, request_id):
            await _send_body(send, 404, b"not found\n", "text/plain", request_id)

    return app
