"""The audit trail in the database: append-only, hash-chained, shared by the replicas
(issue 15, item 5).

Table ``audit_entry``: ``seq`` (1, 2, 3... with no gap), ``time``, ``event``,
``study_uid`` and ``actor`` (copied out of the entry for queries), ``entry`` (the whole
entry as canonical JSON: sorted keys, no spaces), ``prev_hash`` and ``hash`` =
SHA-256(``seq|prev_hash|entry``). The first entry's ``prev_hash`` is :data:`GENESIS`.
Table ``audit_head`` (one row): the last ``seq`` and ``hash``. An append updates the
head row first, which locks it (PostgreSQL's row lock; SQLite's database write lock):
writers of every replica are serialised there, and the chain stays one.

Append-only: triggers (migration 0003) refuse UPDATE, DELETE and TRUNCATE of
``audit_entry``. Tamper-evident beyond that (a superuser bypassing the triggers):
:meth:`AuditLog.verify` recomputes the chain and names the first broken ``seq`` (a row
altered, removed, or rows removed at the end, against the head); recording the head
hash it prints elsewhere (a ticket, a mail) also detects a rewrite of the whole chain.

Writes from requests never wait for the database: :class:`SqlAuditHandler` queues
entries (bounded) and a thread writes them, in order, retrying while the database is
down; what does not fit in the queue is counted and said in the application log. The
Source API's retrievals are written before any image is sent, and refused (503 E508)
when the database cannot take them (:meth:`AuditTrail.durable`: fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from bff.audit import AUDIT_LOGGER, Pseudonymizer, bind, current, entry_of
from bff.errors import StateUnavailable
from bff.state.sql import make_engine

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: Entries waiting for the database at most; beyond, dropped (and said in the log).
MAX_QUEUED = 10_000
_BATCH = 200
_RETRY_S = (0.5, 1.0, 2.0, 5.0)

metadata = MetaData()

audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False, index=True),
    Column("event", String(64), nullable=False, index=True),
    Column("study_uid", String(64), index=True),
    Column("actor", String(64), index=True),
    Column("entry", Text(), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("seq", BigInteger(), nullable=False),
    Column("hash", String(64), nullable=False),
)


def canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(seq: int, prev_hash: str, text: str) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Verified:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    #: the first seq found broken (altered, missing, or after the last kept one)
    broken_seq: int | None = None
    reason: str = ""


class AuditLog:
    """The table's reads and writes (``url``: PostgreSQL, or SQLite for tests)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)

    def close(self) -> None:
        self._engine.dispose()

    def append(self, entries: list[dict[str, Any]]) -> int:
        """Append ``entries`` in order, in one transaction; returns the last seq.
        StateUnavailable when the database fails (nothing appended)."""
        try:
            with self._engine.begin() as conn:
                # Lock the head first (serialises writers of every replica).
                conn.execute(update(audit_head).where(audit_head.c.id == 1).values(id=1))
                head = conn.execute(
                    select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
                ).one()
                seq, prev = int(head.seq), str(head.hash)
                rows = []
                for entry in entries:
                    seq += 1
                    text = canonical(entry)
                    digest = chain_hash(seq, prev, text)
                    rows.append(
                        {
                            "seq": seq,
                            "time": str(entry.get("time", "")),
                            "event": str(entry.get("event", ""))[:64],
                            "study_uid": _short(entry.get("study_uid")),
                            "actor": _short(entry.get("actor")),
                            "entry": text,
                            "prev_hash": prev,
                            "hash": digest,
                        }
                    )
                    prev = digest
                if rows:
                    conn.execute(insert(audit_entry), rows)
                conn.execute(
                    update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev)
                )
                return seq
        except SQLAlchemyError as exc:
            raise StateUnavailable(f"audit table: {type(exc).__name__}") from exc

    def query(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        event: str | None = None,
        study_uid: str | None = None,
        actor: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Entries (oldest first) matching every given filter; ``since``/``until``:
        ISO times, compared with the entries' UTC times."""
        where = []
        if since:
            where.append(audit_entry.c.time >= since)
        if until:
            where.append(audit_entry.c.time < until)
        if event:
            where.append(audit_entry.c.event == event)
        if study_uid:
            where.append(audit_entry.c.study_uid == study_uid)
        if actor:
            where.append(audit_entry.c.actor == actor)
        query = select(audit_entry.c.seq, audit_entry.c.entry).where(*where)
        query = query.order_by(audit_entry.c.seq).limit(max(0, limit))
        with self._engine.connect() as conn:
            return [{"seq": row.seq, **json.loads(row.entry)} for row in conn.execute(query)]

    def _rows(self) -> Iterator[Any]:
        last = 0
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(audit_entry)
                    .where(audit_entry.c.seq > last)
                    .order_by(audit_entry.c.seq)
                    .limit(5000)
                ).all()
            if not rows:
                return
            yield from rows
            last = int(rows[-1].seq)

    def verify(self) -> Verified:
        """Recompute the chain; the first broken seq, if any."""
        with self._engine.connect() as conn:
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).one()
        head_seq, head_hash = int(head.seq), str(head.hash)
        expected, prev, count = 1, GENESIS, 0

        def broken(seq: int, reason: str) -> Verified:
            return Verified(False, count, head_seq, head_hash, seq, reason)

        for row in self._rows():
            seq = int(row.seq)
            if seq != expected:
                return broken(expected, f"entry {expected} is missing (next is {seq})")
            if row.prev_hash != prev:
                return broken(seq, "its previous hash is not the previous entry's hash")
            if chain_hash(seq, prev, row.entry) != row.hash:
                return broken(seq, "its content does not match its hash")
            try:
                data = json.loads(row.entry)
            except ValueError:
                return broken(seq, "its content is not JSON")
            columns = (row.time, row.event, row.study_uid, row.actor)
            stored = (
                str(data.get("time", "")),
                str(data.get("event", ""))[:64],
                _short(data.get("study_uid")),
                _short(data.get("actor")),
            )
            if columns != stored:
                return broken(seq, "its columns differ from its content")
            prev, expected, count = row.hash, expected + 1, count + 1
        if count != head_seq or prev != head_hash:
            return broken(count + 1, f"entries after {count} were removed (head at {head_seq})")
        return Verified(True, count, head_seq, head_hash)


def _short(value: Any) -> str | None:
    return str(value)[:64] if value not in (None, "") else None


class SqlAuditHandler(logging.Handler):
    """Queues audit entries for a writer thread (requests never wait for the database).

    ``sink``: the marker of the app this handler belongs to; entries bound to another
    app's sink (several apps in one test process) are not written here."""

    def __init__(self, audit_log: AuditLog, sink: object, max_queued: int = MAX_QUEUED) -> None:
        super().__init__()
        self._log = audit_log
        self._sink = sink
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queued)
        self._idle = threading.Condition()
        self._pending = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="audit-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        context = current()
        if getattr(record, "audit_written", False) or context.sink not in (None, self._sink):
            return
        entry = entry_of(record, context)
        with self._idle:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self.dropped += 1
                log.error("audit entry dropped (queue full): %s", entry.get("event"))
                return
            self._pending += 1

    def _write(self) -> None:
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            attempt = 0
            while True:
                try:
                    self._log.append(batch)
                    break
                except (TypeError, ValueError):  # an entry that cannot be written: never
                    log.exception("audit: %d entries not writable, dropped", len(batch))
                    self.dropped += len(batch)
                    break
                except StateUnavailable as exc:
                    wait = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                    log.warning("audit table unavailable (%s): retrying in %s s", exc.detail, wait)
                    attempt += 1
                    if self._stop.wait(wait):
                        log.error(
                            "audit: %d entries not written (the table is unavailable at stop)",
                            len(batch) + self._queue.qsize(),
                        )
                        return
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def wait_written(self, timeout: float) -> bool:
        """Whether every queued entry was written within ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer once the queue is written, or after ``timeout`` seconds
        (what is left is said in the log). The app's lifespan calls it; ``close()``
        does not stop the writer: ``logging.config.dictConfig`` (uvicorn's, at each
        server's start) closes every existing handler."""
        self.wait_written(timeout)
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5.0)
        self.close()


@dataclass
class AuditTrail:
    """The app's audit: pseudonyms, and (production) the table and its writer."""

    pseudonymizer: Pseudonymizer
    log: AuditLog | None = None
    handler: SqlAuditHandler | None = None
    sink: object = field(default_factory=object)

    def bind_session(self, session_id: str, provider: str | None, subject: str | None) -> None:
        """The request's entries from now on name this session and person."""
        bind(
            actor=self.pseudonymizer.actor(provider, subject),
            session=self.pseudonymizer.session(session_id),
        )

    async def durable(self, event: str, **fields: Any) -> None:
        """Audit ``event`` and return once the table holds it (fail closed: raises
        StateUnavailable, 503 E508, when it cannot). Without a table, as :func:`audit`."""
        extra: dict[str, Any] = {"audit": {"event": event, **fields}}
        if self.log is not None:
            record = logging.makeLogRecord({"msg": event, **extra})
            await asyncio.to_thread(self.log.append, [entry_of(record)])
            extra["audit_written"] = True
        logging.getLogger(AUDIT_LOGGER).info(event, extra=extra)
