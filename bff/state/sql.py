"""The state store in a database shared by the replicas (issue 15, item 1).

PostgreSQL in production (the KOS archive's engine: one database engine to run, back up
and monitor, not two; a single-use take is one ``DELETE ... RETURNING``, atomic between
replicas), SQLite for the tests and a one-host deployment. SQLAlchemy Core, portable SQL
except the upsert (``ON CONFLICT``, which both engines spell alike).

Table ``state_entry``: ``(kind, key)`` primary key, the sealed ``payload`` (never a
token in clear: :mod:`bff.state.sealing`), ``created_at``, ``last_seen`` and
``expires_at`` in seconds since the epoch (index ``(kind, expires_at)`` for the purge).
The schema is created by the migrations (``drimbox-viewer db upgrade``), never here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    Column,
    Double,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, Row, make_url
from sqlalchemy.exc import SQLAlchemyError

from bff.errors import StateUnavailable
from bff.state.backend import Entry

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Seconds any statement of the state store (and a wait for a pooled connection) may
#: take before it fails: a database outage is an error, never an endless wait.
DB_TIMEOUT_S = 5.0

metadata = MetaData()

state_table = Table(
    "state_entry",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("key", String(128), nullable=False),
    Column("payload", LargeBinary(), nullable=False),
    Column("created_at", Double(), nullable=False),
    Column("last_seen", Double(), nullable=False),
    Column("expires_at", Double(), nullable=False),
    PrimaryKeyConstraint("kind", "key", name="pk_state_entry"),
    Index("ix_state_entry_kind_expires_at", "kind", "expires_at"),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def make_engine(url: str, *, timeout: float | None = DB_TIMEOUT_S) -> Engine:
    """An engine for ``sqlite:///path`` (directory created, WAL, foreign keys) or
    ``postgresql+psycopg://...``; ``timeout``: seconds bounding the connection, a
    pooled connection's wait and (PostgreSQL) every statement; None: unbounded (the
    migrations)."""
    parsed = make_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if timeout is not None and not is_sqlite:
        options["pool_timeout"] = timeout
    if timeout is not None and parsed.get_backend_name() == "postgresql":
        given = parsed.query.get("options", "")  # e.g. "-c TimeZone=..." in the URL: kept
        given = given if isinstance(given, str) else " ".join(given)
        options["connect_args"] = {
            "connect_timeout": max(1, round(timeout)),
            "options": f"{given} -c statement_timeout={round(timeout * 1000)}".strip(),
        }
    engine = create_engine(url, **options)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _translated(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A database failure (refused, timed out, dropped) becomes StateUnavailable (503
    E508), at this seam; its text goes to the log only."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise StateUnavailable(f"state store: {type(exc).__name__}") from exc

    return wrapper


def _entry(row: Row[Any] | Any) -> Entry:
    return Entry(bytes(row.payload), row.created_at, row.last_seen, row.expires_at)


class SqlBackend:
    """:class:`~bff.state.backend.StateBackend` over SQLAlchemy (PostgreSQL, SQLite)."""

    shared = True

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)
        self._upsert: Any = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    def _where(self, kind: str, key: str) -> Any:
        return (state_table.c.kind == kind) & (state_table.c.key == key)

    @_translated
    def add(self, kind: str, key: str, entry: Entry, *, max_entries: int) -> bool:
        with self._engine.begin() as conn:
            count = conn.execute(
                select(func.count()).select_from(state_table).where(state_table.c.kind == kind)
            ).scalar_one()
            if count >= max_entries:
                return False
            conn.execute(insert(state_table).values(kind=kind, key=key, **_values(entry)))
            return True

    @_translated
    def put(self, kind: str, key: str, entry: Entry) -> None:
        values = _values(entry)
        statement = self._upsert(state_table).values(kind=kind, key=key, **values)
        statement = statement.on_conflict_do_update(index_elements=["kind", "key"], set_=values)
        with self._engine.begin() as conn:
            conn.execute(statement)

    @_translated
    def get(self, kind: str, key: str) -> Entry | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(state_table).where(self._where(kind, key))).first()
        return _entry(row) if row is not None else None

    @_translated
    def take(self, kind: str, key: str) -> Entry | None:
        with self._engine.begin() as conn:
            row = conn.execute(
                delete(state_table)
                .where(self._where(kind, key))
                .returning(
                    state_table.c.payload,
                    state_table.c.created_at,
                    state_table.c.last_seen,
                    state_table.c.expires_at,
                )
            ).first()
        return _entry(row) if row is not None else None

    @_translated
    def delete(self, kind: str, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(state_table).where(self._where(kind, key)))

    @_translated
    def touch(self, kind: str, key: str, last_seen: float, expires_at: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(state_table)
                .where(self._where(kind, key), state_table.c.last_seen < last_seen)
                .values(last_seen=last_seen, expires_at=expires_at)
            )

    @_translated
    def expired(self, kind: str, now: float, limit: int) -> list[tuple[str, Entry]]:
        query = (
            select(state_table)
            .where(state_table.c.kind == kind, state_table.c.expires_at < now)
            .order_by(state_table.c.expires_at)
            .limit(max(0, limit))
        )
        with self._engine.connect() as conn:
            return [(row.key, _entry(row)) for row in conn.execute(query)]

    @_translated
    def purge(self, kind: str, now: float) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(state_table).where(
                    state_table.c.kind == kind, state_table.c.expires_at < now
                )
            )
            return int(result.rowcount or 0)

    @_translated
    def trim(self, kind: str, keep: int) -> int:
        with self._engine.begin() as conn:
            count = conn.execute(
                select(func.count()).select_from(state_table).where(state_table.c.kind == kind)
            ).scalar_one()
            extra = max(0, int(count) - keep)
            if not extra:
                return 0
            oldest = (
                select(state_table.c.key)
                .where(state_table.c.kind == kind)
                .order_by(state_table.c.created_at)
                .limit(extra)
                .scalar_subquery()
            )
            result = conn.execute(
                delete(state_table).where(state_table.c.kind == kind, state_table.c.key.in_(oldest))
            )
            return int(result.rowcount or 0)

    @_translated
    def count(self, kind: str) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(state_table).where(state_table.c.kind == kind)
                ).scalar_one()
            )

    def close(self) -> None:
        self._engine.dispose()


def _values(entry: Entry) -> dict[str, Any]:
    return {
        "payload": entry.payload,
        "created_at": entry.created_at,
        "last_seen": entry.last_seen,
        "expires_at": entry.expires_at,
    }
