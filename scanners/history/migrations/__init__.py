"""Alembic environment and revisions of the history store schema (run at open by scanners.history.store).

A schema change is a new ``versions/rNNNN_<what>.py`` whose ``down_revision`` is the previous
revision, written to match the change in ``models.py``; a test builds the schema from the
migrations on SQLite and PostgreSQL and fails on any difference from the models.
"""
