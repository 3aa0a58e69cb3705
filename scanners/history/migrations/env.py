"""Alembic environment: always run programmatically on a connection the store already holds.

:func:`scanners.history.store.open_store` opens the write transaction (serialised against
other writers), puts its connection in ``config.attributes["connection"]`` and calls
``alembic.command.upgrade``; the migrations run inside that transaction, so two processes
opening a new store at once cannot both create it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from scanners.history.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("the history store migrations run from scanners.history.store.open_store, not the alembic CLI")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
