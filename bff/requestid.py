"""The request id (issue 15 item 4): one id per HTTP request, carried into the logs,
the audit trail and the calls the request makes upstream (PACS, remote Source).

Taken from an incoming ``X-Request-ID`` header when it is well formed (a balancer's id:
bounded length and charset, so nothing hostile reaches a log line), else a new one. It
lives in a context variable: tasks started while serving a request (a series
retrieval, a prefetch) inherit it. A shared foundation: imports nothing of the app.
"""

from __future__ import annotations

import contextvars
import re
import secrets

HEADER = "x-request-id"
#: What an incoming id may be: a UUID, nginx's ``$request_id`` (32 hex digits), ...
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,64}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def accept_or_new(incoming: str | None) -> str:
    """``incoming`` when well formed, else a fresh id."""
    if incoming is not None and WELL_FORMED.fullmatch(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return _current.get()


def bind_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Make ``request_id`` current; give the token to :func:`reset_request_id`."""
    return _current.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)
