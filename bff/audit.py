"""The audit trail: a separate, structured stream, never the application log.

Entries name what happened (event, location, study, KOS, outcome and error code, the
names of mismatching identity traits) but never tokens, cookies or patient identity
values. Who and from where come from the request's context (:func:`bind`, set by
:class:`bff.web.audit_context.AuditContext` and again at sign-in), added to every entry:

- ``actor``: a pseudonym of the signed-in person, HMAC-SHA-256 of ``provider:subject``
  under ``DRIMBOX_AUDIT_KEY_FILE`` (:class:`Pseudonymizer`): the same person gives the
  same actor, the subject itself is never written; whoever holds the key can check
  whether a given subject is an actor (an investigation), nobody can read it back;
- ``session``: the HMAC of the session id (entries of one session go together; the
  cookie cannot be rebuilt from it);
- ``client_ip``: the TCP peer (behind a proxy: what the proxy says, docs/deployment);
- ``request_id``: the request's id (:mod:`bff.requestid`), the same as in the
  application log, the access log and the upstream calls;
- on the Source API, the Consumer's certificate subject (``peer_certificate_dn``), its
  whitelist entry and client id; the professional is the actor (the HMAC of his PSC
  subject, which holds his RPPS: ``drimbox-viewer audit actor psc <subject>`` finds his
  entries, with the key).

Sinks (logging handlers on :data:`AUDIT_LOGGER`): the JSON-lines file
(:class:`JsonLinesHandler`, the demo's, kept when ``DRIMBOX_AUDIT_LOG`` is set) and the
append-only, hash-chained table (:mod:`bff.state.audit_log`, ``DRIMBOX_AUDIT_URL``).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bff.requestid import current_request_id

AUDIT_LOGGER = "bff.audit"
#: The fields the context adds to every entry (an entry's own fields win).
CONTEXT_FIELDS = ("actor", "session", "client_ip", "request_id")


@dataclass(frozen=True)
class Context:
    actor: str | None = None
    session: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    #: The sink this request's entries belong to (several apps in one test process);
    #: None: every sink.
    sink: object | None = None


_NONE = Context()
_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "drimbox_audit_context", default=None
)


def bind(**changes: Any) -> contextvars.Token[Context | None]:
    """Set fields of the current context (this request and the tasks it starts)."""
    return _context.set(replace(current(), **changes))


def reset(token: contextvars.Token[Context | None]) -> None:
    _context.reset(token)


def current() -> Context:
    return _context.get() or _NONE


class Pseudonymizer:
    """HMAC-SHA-256 pseudonyms under the audit key (32 bytes or more)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the audit key must be 32 bytes or more")
        self._key = key

    @classmethod
    def from_file(cls, path: str) -> Pseudonymizer:
        return cls(Path(path).read_bytes().strip())

    @classmethod
    def ephemeral(cls) -> Pseudonymizer:
        """A random key for this process (the demo): actors do not match across starts."""
        return cls(os.urandom(32))

    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def actor(self, provider: str | None, subject: str | None) -> str | None:
        return self._mac("actor", f"{provider or ''}:{subject}") if subject else None

    def session(self, session_id: str | None) -> str | None:
        return self._mac("session", session_id) if session_id else None


def audit(event: str, **fields: Any) -> None:
    """Write one entry; it carries the id of the request being served, if any (issue 15
    item 4: the same id as the application log, the access log and the upstream calls)."""
    request_id = current_request_id()
    if request_id is not None:
        fields.setdefault("request_id", request_id)
    logging.getLogger(AUDIT_LOGGER).info(event, extra={"audit": {"event": event, **fields}})


def entry_of(record: logging.LogRecord, context: Context | None = None) -> dict[str, Any]:
    """The entry a log record carries: time, event, the context's fields, its own."""
    context = context or current()
    entry = dict(getattr(record, "audit", None) or {"event": record.getMessage()})
    entry.setdefault("event", record.getMessage())
    stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    who = {name: getattr(context, name) for name in CONTEXT_FIELDS}
    return {"time": stamp.isoformat(timespec="microseconds"), **who, **entry}


class JsonLinesHandler(logging.FileHandler):
    """One JSON object per line: time, event, context and the entry's fields."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, encoding="utf-8")

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(entry_of(record), ensure_ascii=False, default=str)


def add_handler(handler: logging.Handler) -> logging.Handler:
    """Send audit entries to ``handler`` too (and never to the application log)."""
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def configure_audit(path: Path) -> logging.Handler:
    """Send audit entries to ``path`` (and only there); returns the handler to close."""
    return add_handler(JsonLinesHandler(path))


def remove_handler(handler: logging.Handler) -> None:
    logging.getLogger(AUDIT_LOGGER).removeHandler(handler)
    handler.close()
