"""Alembic's environment for the decision log: run by service.decisionlog.store at
start-up on the store's own connection (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from service.decisionlog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
