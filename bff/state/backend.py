"""The one state store interface, and its in-memory implementation.

An entry is an opaque, sealed payload (:mod:`bff.state.sealing`) under a ``(kind,
key)``, with three times (seconds since the epoch): created, last seen, and when it
expires. Kinds in use: ``session``, ``ended`` (what the logout of an expired session
needs), ``login`` (a pending OIDC round trip), ``handover`` (a Consumer hand-over).

The stores above (:mod:`bff.auth.sessions`, :mod:`bff.auth.pending`,
:mod:`bff.access.handover`) give entries their meaning; an implementation only keeps
them, takes them once (:meth:`StateBackend.take`, atomic: one taker wins) and drops the
expired ones. :class:`MemoryBackend` serves one process (the demo, unit tests);
:class:`bff.state.sql.SqlBackend` serves every replica from one database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Protocol

KINDS = ("session", "ended", "login", "handover")


@dataclass(frozen=True)
class Entry:
    payload: bytes
    created_at: float
    last_seen: float
    expires_at: float


class StateBackend(Protocol):
    """Where sessions, pending logins and hand-overs are kept (issue 15, item 1)."""

    #: True when other processes see the same entries (a database).
    shared: bool

    def add(self, kind: str, key: str, entry: Entry, *, max_entries: int) -> bool:
        """Insert a new entry; False when ``max_entries`` of its kind are kept already.
        (Across replicas the bound is checked, then written: it may be passed by the
        entries inserted in between.)"""
        ...

    def put(self, kind: str, key: str, entry: Entry) -> None:
        """Insert or replace."""
        ...

    def get(self, kind: str, key: str) -> Entry | None: ...

    def take(self, kind: str, key: str) -> Entry | None:
        """Remove and return (single use): of concurrent takers, one gets the entry."""
        ...

    def delete(self, kind: str, key: str) -> None: ...

    def touch(self, kind: str, key: str, last_seen: float, expires_at: float) -> None:
        """Record activity (never moves ``last_seen`` backwards)."""
        ...

    def expired(self, kind: str, now: float, limit: int) -> list[tuple[str, Entry]]:
        """Up to ``limit`` entries of ``kind`` expired at ``now``, oldest first."""
        ...

    def purge(self, kind: str, now: float) -> int:
        """Drop the entries of ``kind`` expired at ``now``; returns how many."""
        ...

    def trim(self, kind: str, keep: int) -> int:
        """Drop the oldest entries of ``kind`` beyond ``keep``; returns how many."""
        ...

    def count(self, kind: str) -> int: ...

    def close(self) -> None: ...


class MemoryBackend:
    """Entries in this process's memory (thread-safe: stores are also used from threads)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, OrderedDict[str, Entry]] = {k: OrderedDict() for k in KINDS}

    def _of(self, kind: str) -> OrderedDict[str, Entry]:
        try:
            return self._kinds[kind]
        except KeyError:
            raise ValueError(f"unknown state kind {kind!r}") from None

    def add(self, kind: str, key: str, entry: Entry, *, max_entries: int) -> bool:
        with self._lock:
            entries = self._of(kind)
            if len(entries) >= max_entries:
                return False
            entries[key] = entry
            return True

    def put(self, kind: str, key: str, entry: Entry) -> None:
        with self._lock:
            self._of(kind)[key] = entry

    def get(self, kind: str, key: str) -> Entry | None:
        with self._lock:
            return self._of(kind).get(key)

    def take(self, kind: str, key: str) -> Entry | None:
        with self._lock:
            return self._of(kind).pop(key, None)

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._of(kind).pop(key, None)

    def touch(self, kind: str, key: str, last_seen: float, expires_at: float) -> None:
        with self._lock:
            entries = self._of(kind)
            entry = entries.get(key)
            if entry is not None and entry.last_seen < last_seen:
                entries[key] = replace(entry, last_seen=last_seen, expires_at=expires_at)

    def expired(self, kind: str, now: float, limit: int) -> list[tuple[str, Entry]]:
        with self._lock:
            found = [(k, e) for k, e in self._of(kind).items() if e.expires_at < now]
        found.sort(key=lambda item: item[1].expires_at)
        return found[:limit]

    def purge(self, kind: str, now: float) -> int:
        with self._lock:
            entries = self._of(kind)
            keys = [k for k, e in entries.items() if e.expires_at < now]
            for key in keys:
                del entries[key]
            return len(keys)

    def trim(self, kind: str, keep: int) -> int:
        with self._lock:
            entries = self._of(kind)
            extra = max(0, len(entries) - keep)
            oldest = sorted(entries, key=lambda k: entries[k].created_at)[:extra]
            for key in oldest:
                del entries[key]
            return extra

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._of(kind))

    def close(self) -> None:
        with self._lock:
            for entries in self._kinds.values():
                entries.clear()
