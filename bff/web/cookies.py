"""The BFF's cookies on a response, all HttpOnly, SameSite=Lax, Path=/, no Domain; Secure
and ``__Host-`` prefixed in production:

- the session cookie (bff/auth/sessions.py): only a signed session id;
- the pending cookie (bff/auth/pending.py): a signed, short-lived report link awaiting
  login, instead of a session for an anonymous view.
"""

from __future__ import annotations

from starlette.responses import Response

from bff.auth.pending import Pending, PendingCookies
from bff.auth.sessions import Session, SessionStore


def _set(response: Response, name: str, value: str, max_age: float, secure: bool) -> Response:
    response.set_cookie(
        name, value, max_age=int(max_age), httponly=True, secure=secure, samesite="lax", path="/"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def with_session_cookie(response: Response, store: SessionStore, session: Session) -> Response:
    """The session's cookie on ``response``; the session as it is now is saved first, for
    every replica (a route changes a session, then answers with its cookie)."""
    store.save(session)
    return _set(
        response, store.cookie_name, store.cookie_value(session), store.max_age, store.secure
    )


def with_pending_cookie(response: Response, cookies: PendingCookies, pending: Pending) -> Response:
    return _set(
        response, cookies.cookie_name, cookies.dumps(pending), cookies.max_age, cookies.secure
    )


def without_pending_cookie(response: Response, cookies: PendingCookies) -> Response:
    response.delete_cookie(
        cookies.cookie_name, path="/", secure=cookies.secure, httponly=True, samesite="lax"
    )
    return response
