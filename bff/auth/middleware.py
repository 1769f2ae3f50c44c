"""Pure ASGI middleware: find the request's session from its cookie.

Puts the :class:`~bff.auth.sessions.Session` (or None) in ``scope["session"]`` and its
grant in ``scope["session_grant"]``, which the one access function reads.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from bff.auth.sessions import COOKIE_NAME, SessionStore


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
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            store: SessionStore | None = getattr(scope["app"].state, "sessions", None)
            session = store.load(read_cookie(scope, COOKIE_NAME)) if store else None
            scope["session"] = session
            scope["session_grant"] = session.grant if session else None
        await self.app(scope, receive, send)
