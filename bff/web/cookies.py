"""The session cookie on a response (bff/auth/sessions.py: the cookie holds only a signed
session id; HttpOnly, SameSite=Lax, Path=/, no Domain; Secure and ``__Host-`` prefixed in
production)."""

from __future__ import annotations

from starlette.responses import Response

from bff.auth.sessions import Session, SessionStore


def with_session_cookie(response: Response, store: SessionStore, session: Session) -> Response:
    response.set_cookie(
        store.cookie_name,
        store.cookie_value(session),
        max_age=int(store.max_age),
        httponly=True,
        secure=store.secure,
        samesite="lax",
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return response
