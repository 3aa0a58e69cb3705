"""The schema the migrations build is the one the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from scanners.errors import PreauditError
from scanners.history.models import Base
from scanners.history.store import MIGRATIONS_DIR, open_store, schema_head


def test_migrations_build_exactly_the_models_schema(store_url: str) -> None:
    with open_store(store_url) as store, store.reading() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == schema_head()
        assert compare_metadata(context, Base.metadata) == []


def test_every_revision_file_is_a_migration_alembic_runs() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    walked = {Path(script.path).name for script in scripts.walk_revisions()}
    files = {p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py") if p.name != "__init__.py"}
    assert walked == files
    assert scripts.get_current_head() == schema_head()
    # Package directories (with __init__.py) are what setuptools ships with the "*.py" package data.
    assert (MIGRATIONS_DIR / "__init__.py").is_file() and (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()


def test_a_store_from_a_newer_preaudit_is_refused_not_damaged(store_url: str) -> None:
    with open_store(store_url) as store, store.writing() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(PreauditError, match="schema revision from_the_future, which this preaudit does not know"):
        open_store(store_url)
