"""Pure ASGI middleware: find the request's session from its cookie.

Puts the :class:`~bff.auth.sessions.Session` (or None) in ``scope["session"]``; the
access decision reads its grant (``Session.grant``). Every request counts as activity
(the idle timeout starts again), except the viewer's look at whether its session still
lives (:data:`UNTOUCHED_PATHS`, issue 14), which must not keep an idle session alive.
A store in a database is read off the event loop; its failure is a 503 E508.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from bff.auth.sessions import SessionStore

#: Requests that do not count as the user's activity.
SESSION_STATE_PATH = "/api/session/state"
UNTOUCHED_PATHS = frozenset({SESSION_STATE_PATH})


def read_cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is simply no session
                return None
            if name in jar:
                return jar[name].value
    return None


class SessionMiddleware:
    """``store_of(scope)``: the application's session store (None before it started)."""

    def __init__(self, app: ASGIApp, store_of: Callable[[Scope], SessionStore | None]) -> None:
        self.app = app
        self.store_of = store_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            store = self.store_of(scope)
            scope["session"] = None
            if store is not None:
                cookie = read_cookie(scope, store.cookie_name)
                touch = scope.get("path") not in UNTOUCHED_PATHS
                if store.shared and cookie:
                    # A database read (once per few seconds per session) or an activity
                    # write: never on the event loop (a slow database slows no one else).
                    scope["session"] = await asyncio.to_thread(store.load, cookie, touch=touch)
                else:
                    scope["session"] = store.load(cookie, touch=touch)
        await self.app(scope, receive, send)
