"""The session cookie on a response (bff/auth/sessions.py: the cookie holds only a signed
session id; HttpOnly, SameSite=Lax, Secure in production)."""

from __future__ import annotations

from starlette.responses import Response

from bff.auth.sessions import COOKIE_NAME, Session, SessionStore


def with_session_cookie(
    response: Response, store: SessionStore, session: Session, *, secure: bool
) -> Response:
    response.set_cookie(
        COOKIE_NAME,
        store.cookie_value(session),
        max_age=int(store.max_age),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return response
