"""Pure ASGI middleware: who and from where, for every audit entry of the request
(:func:`bff.audit.bind`): the pseudonymous actor and session of the request's session
(after :class:`bff.auth.middleware.SessionMiddleware`), the client address, the request
id (None until a request-id middleware puts one in ``scope["state"]["request_id"]``),
and the app's audit sink. Sign-in binds the new session again
(:meth:`bff.state.audit_log.AuditTrail.bind_session`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bff.audit import bind, reset
from bff.state.audit_log import AuditTrail


class AuditContext:
    """``trail_of(scope)``: the app's audit trail (None before it started)."""

    def __init__(self, app: ASGIApp, trail_of: Callable[[Scope], AuditTrail | None]) -> None:
        self.app = app
        self.trail_of = trail_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trail = self.trail_of(scope) if scope["type"] == "http" else None
        if trail is None:
            await self.app(scope, receive, send)
            return
        session: Any = scope.get("session")
        client = scope.get("client")
        state = scope.get("state") or {}
        pseudonyms = trail.pseudonymizer
        token = bind(
            actor=pseudonyms.actor(session.provider, session.subject) if session else None,
            session=pseudonyms.session(session.id) if session else None,
            client_ip=client[0] if client else None,
            request_id=state.get("request_id") if isinstance(state, dict) else None,
            sink=trail.sink,
        )
        try:
            await self.app(scope, receive, send)
        finally:
            reset(token)
