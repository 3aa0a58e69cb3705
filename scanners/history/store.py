"""Open the history store: the engine, per-backend safety settings, schema migrations, one-line errors.

Writers are serialised on both backends, so two scans recorded at once both succeed and the
drift check of each sees the other: SQLite runs in WAL mode and every write transaction is
``BEGIN IMMEDIATE`` (a second writer waits up to the busy timeout instead of failing);
PostgreSQL writers take a transaction-scoped advisory lock. Readers never wait for writers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from scanners.errors import InputError, PreauditError
from scanners.history.urls import display_url, resolve_store_url, scrub

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_SECONDS = 120.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 15
# Any constant shared by every preaudit process; "prea" in ASCII.
_WRITE_LOCK_KEY = 0x70726561
_WRITE_OPTION = "preaudit_write"
_MAX_MESSAGE = 400


def describe_error(exc: BaseException, url: URL) -> str:
    """One line from a database error: the driver's own words, never the SQL, never the password."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = "; ".join(lines) or type(original).__name__
    text = scrub(text, url)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


class HistoryStore:
    """An open store. Use :meth:`reading` and :meth:`writing` for transactions; close when done."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url

    @property
    def display(self) -> str:
        """The store URL, safe to print."""
        return display_url(self.url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction: one consistent snapshot, no lock on writers."""
        with self._errors("reading"), self.engine.connect() as conn:
            if self.backend == "postgresql":
                # PostgreSQL's default (read committed) gives each statement a new snapshot; a
                # report or an export must see the store as of one instant. SQLite's WAL
                # readers already do.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, serialised against every other writer; all or nothing."""
        with self._errors("writing"), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                if self.backend == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_WRITE_LOCK_KEY)))
                yield conn

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise PreauditError(f"store {self.display}: {action} failed: {describe_error(exc, self.url)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(url: str | URL | None = None, *, create: bool = True) -> HistoryStore:
    """Open (and with ``create``, create) the store at ``url``, bringing its schema up to date.

    ``url`` is a file path, ``sqlite:///PATH`` or ``postgresql://...``; None means
    ``$PREAUDIT_STORE`` or the default file. Without ``create`` a missing SQLite file is an
    InputError, so that a mistyped path does not silently start an empty history.
    """
    resolved = url if isinstance(url, URL) else resolve_store_url(url)
    store = HistoryStore(_engine(resolved, create), resolved)
    try:
        _migrate(store)
    except BaseException:
        store.close()
        raise
    return store


def _engine(url: URL, create: bool) -> Engine:
    if url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(url, create)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        url,
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS, "application_name": "preaudit"},
    )


def _prepare_sqlite_file(url: URL, create: bool) -> None:
    path = Path(str(url.database))
    if path.exists():
        if not path.is_file():
            raise InputError(f"store {display_url(url)} is not a file")
        return
    if not create:
        raise InputError(
            f"store {display_url(url)} does not exist yet (record a scan with `preaudit history record`, "
            "or point --store / PREAUDIT_STORE at the store)"
        )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Findings evidence is for security staff and auditors only: owner-only from the start
        # (SQLite gives its -wal and -shm files the same mode).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise PreauditError(f"store {display_url(url)}: cannot create it: {exc.strerror}") from None


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_on_begin); the sqlite3 module's own implicit
    # transactions would start write transactions too late to wait for a lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front (waiting up to the busy timeout); a
    # deferred one that upgrades later can fail with "database is locked" when another
    # process wrote in between.
    immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic_config() -> Config:
    config = Config()
    # Config values are interpolated by configparser: a literal % must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def schema_head() -> str | None:
    return _scripts().get_current_head()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _migrate(store: HistoryStore) -> None:
    scripts = _scripts()
    head = scripts.get_current_head()
    with store.reading() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise PreauditError(
            f"store {store.display} has schema revision {current}, which this preaudit does not know "
            f"(newest known: {head}); use the preaudit version that wrote it or a newer one"
        )
    config = _alembic_config()
    with store.writing() as conn:
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise PreauditError(f"store {store.display}: schema migration failed: {exc}") from None
