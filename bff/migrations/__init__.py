"""The database schema's migrations (Alembic), run by ``drimbox-viewer db upgrade``.

One chain of revisions (``versions/``) for every table the BFF writes: the KOS archive
(``kos``, ``kos_series``, ``kos_instance``: the baseline, as ``create_all`` made them
before migrations existed), the shared state (``state_entry``) and the audit trail
(``audit_entry``, ``audit_head``, append-only triggers). A deployment runs
``drimbox-viewer db upgrade`` before starting a new version; production never creates
or alters a table at start and refuses to start when a database is not at the head
(:func:`require_head`). The demo and the tests upgrade their embedded SQLite at start.

A database made by ``create_all`` before migrations (its ``kos`` table present, no
``alembic_version``) is adopted: stamped at the baseline, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from bff.settings import Settings
from bff.state.sql import make_engine

BASELINE = "0001"
_HERE = Path(__file__).resolve().parent


class SchemaNotCurrent(RuntimeError):
    """The database is not at the code's schema: run ``drimbox-viewer db upgrade``."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this code needs."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    if found is None:  # pragma: no cover - the chain is never empty
        raise RuntimeError("no migration")
    return found


def current(url: str) -> str | None:
    """The database's revision (None: never migrated)."""
    engine = make_engine(url, timeout=None)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (adopting a pre-migration schema)."""
    engine = make_engine(url, timeout=None)
    try:
        with engine.begin() as conn:
            config = _config(conn)
            if MigrationContext.configure(conn).get_current_revision() is None and inspect(
                conn
            ).has_table("kos"):
                command.stamp(config, BASELINE)
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def require_head(url: str) -> None:
    """Raise :class:`SchemaNotCurrent` unless the database at ``url`` is at the head."""
    found, needed = current(url), head()
    if found != needed:
        raise SchemaNotCurrent(
            f"the database schema is at revision {found or 'none'}, this version needs "
            f"{needed}: run 'drimbox-viewer db upgrade' before starting it"
        )


def database_urls(settings: Settings) -> list[str]:
    """The databases the BFF writes (the archive's, the state's unless in memory, the
    audit trail's if any); each holds the whole schema (one database in production)."""
    urls = [settings.archive_url]
    for url in (settings.state_url, settings.audit_url):
        if url and url != "memory" and url not in urls:
            urls.append(url)
    return urls
