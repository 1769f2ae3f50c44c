"""State backends for tests (issue 15 item 1): the same suites run on each.

``backend_named("memory" | "sqlite", directory)``; PostgreSQL: ``sql_backend(url)`` on a
database of tests/integration/pg.py. SQL schemas are made by the migrations, as in a
deployment (``drimbox-viewer db upgrade``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bff.migrations import upgrade
from bff.state.backend import MemoryBackend, StateBackend
from bff.state.sql import SqlBackend


@contextlib.contextmanager
def sql_backend(url: str) -> Iterator[SqlBackend]:
    upgrade(url)
    backend = SqlBackend(url)
    try:
        yield backend
    finally:
        backend.close()


@contextlib.contextmanager
def backend_named(name: str, directory: Path) -> Iterator[StateBackend]:
    if name == "memory":
        yield MemoryBackend()
        return
    with sql_backend(f"sqlite:///{directory / 'state.db'}") as backend:
        yield backend
