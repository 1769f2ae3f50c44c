"""The audit trail: a separate, structured stream (JSON lines), never the application log.

Entries name what happened (event, location, study, KOS, outcome and error code, the
names of mismatching identity traits) but never tokens, cookies or patient identity
values. Each entry carries the request id (bff/requestid.py). The Source API names who
asked (the professional's PSC subject and RPPS, the Consumer's client id, the peer), as
access to patient data by professionals is traced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from bff.requestid import current_request_id

AUDIT_LOGGER = "bff.audit"


def audit(event: str, **fields: Any) -> None:
    """Write one entry; it carries the id of the request being served, if any (issue 15
    item 4: the same id as the application log, the access log and the upstream calls)."""
    request_id = current_request_id()
    if request_id is not None:
        fields.setdefault("request_id", request_id)
    logging.getLogger(AUDIT_LOGGER).info(event, extra={"audit": {"event": event, **fields}})


class JsonLinesHandler(logging.FileHandler):
    """One JSON object per line: time, event and the entry's fields."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, encoding="utf-8")

    def format(self, record: logging.LogRecord) -> str:
        entry = dict(getattr(record, "audit", None) or {"event": record.getMessage()})
        entry.setdefault("event", record.getMessage())
        stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        return json.dumps({"time": stamp.isoformat(), **entry}, ensure_ascii=False, default=str)


def configure_audit(path: Path) -> logging.Handler:
    """Send audit entries to ``path`` (and only there); returns the handler to close."""
    logger = logging.getLogger(AUDIT_LOGGER)
    handler = JsonLinesHandler(path)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
