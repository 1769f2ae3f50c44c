"""Alembic's environment: the connection :mod:`bff.migrations` opened, our tables."""

from __future__ import annotations

from alembic import context

from bff.migrations.env_metadata import target_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=target_metadata)
with context.begin_transaction():
    context.run_migrations()
