"""One request-size policy for every request (issue 13): a body over its route's cap is
refused with 413 E440 before it is read whole.

The policy is data (:class:`BodyCaps`): a small default cap for every path
(``DRIMBOX_MAX_FORM_BYTES``: forms, logins, logout, JSON) and a larger one for the exact
paths that take a KOS file (``DRIMBOX_MAX_KOS_BYTES`` plus the form around it). The
middleware (:class:`BodyLimits`, pure ASGI) enforces it on every request, whatever its
method:

- a ``Content-Length`` over the cap: answered at once, the application is not called and
  not one byte of the body is read;
- otherwise (chunked, or no length): the bytes are counted as the application receives
  them; the ``receive`` that crosses the cap raises :class:`~bff.errors.PayloadTooLarge`,
  which the route lets through and the error handler renders like every error. So at most
  the cap plus one chunk of the server (64 KiB with uvicorn) is ever held.

Both answers say ``Connection: close``: the server then drops the rest of the body
instead of draining it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bff.errors import PayloadTooLarge
from bff.web.errors import error_response


@dataclass(frozen=True)
class BodyCaps:
    """The largest body, in bytes, of each path: ``by_path`` (exact paths), else
    ``default``."""

    default: int
    by_path: Mapping[str, int] = field(default_factory=dict)

    def for_path(self, path: str) -> int:
        return self.by_path.get(path, self.default)


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length when it is one plain number (the server refuses a
    malformed one before the application sees it)."""
    values = [value for name, value in scope.get("headers", []) if name == b"content-length"]
    if len(values) != 1 or not values[0].isdigit():
        return None
    return int(values[0])


class BodyLimits:
    def __init__(self, app: ASGIApp, caps: BodyCaps) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.for_path(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > cap:
            refusal = PayloadTooLarge(f"Content-Length {declared} over the cap of {cap} bytes")
            response = error_response(Request(scope), refusal)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0
        over = False

        async def bounded_receive() -> Message:
            nonlocal received, over
            if over:
                raise PayloadTooLarge(f"body read again after passing {cap} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    over = True
                    raise PayloadTooLarge(f"body passed the cap of {cap} bytes")
            return message

        async def closing_send(message: Message) -> None:
            if over and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, bounded_receive, closing_send)
