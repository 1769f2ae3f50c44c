"""The application log (issue 15 item 4): plain text for a person at a terminal (demo)
or one JSON object per line for a log collector (production), chosen by
``DRIMBOX_LOG_FORMAT``.

Every line carries the request id of the request being served (bff/requestid.py). The
access log (logger ``bff.access``, written by :mod:`bff.web.observe`) adds its fields:
method, path (never a query string: OIDC codes and states travel in those of
``/auth/callback``), route family, status, bytes, duration, client address. Nothing
here reads tokens or cookies; the audit trail is a separate stream (bff/audit.py).
A shared foundation: imports nothing of the app.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

from bff.requestid import current_request_id

ACCESS_LOGGER = "bff.access"
#: The access log's fields, in the order a text line shows them.
ACCESS_FIELDS = ("method", "path", "route", "status", "bytes", "duration_ms", "client")
FORMATS = ("json", "text")


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (unless it carries one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One object per line: time, level, logger, message, request_id, and the access
    log's fields when the record is an access log line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


def access_message(fields: dict[str, Any]) -> str:
    """The access log line's message (the JSON form also has each field on its own)."""
    return " ".join(str(fields.get(name, "-")) for name in ACCESS_FIELDS)


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """One handler on the root logger (uvicorn's loggers propagate to it: the servers
    are started with ``log_config=None``); returns it."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
