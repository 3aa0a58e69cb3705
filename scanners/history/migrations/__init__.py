"""Alembic environment and revisions of the history store schema (run at open by scanners.history.store)."""
