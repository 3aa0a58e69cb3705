"""Where the history store lives, and how to name it without ever showing its password.

A store is given as ``--store URL``, else ``$PREAUDIT_STORE``, else a SQLite file in the
default location. Accepted: a bare file path, ``sqlite:///PATH`` and ``postgresql://...``
(driven by psycopg 3). Anything that prints a store goes through :func:`display_url`, and
any driver message goes through :func:`scrub` first.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from scanners.errors import InputError

ENV_VAR = "PREAUDIT_STORE"
SYSTEM_STORE = Path("/var/lib/preaudit/history.sqlite")
_POSTGRES_NAMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
_SQLITE_NAMES = frozenset({"sqlite", "sqlite+pysqlite"})
_MASK = "***"


def default_store_path() -> Path:
    """Root keeps the history beside the lab state; other users keep it in their XDG state dir."""
    if os.geteuid() == 0:
        return SYSTEM_STORE
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "preaudit" / "history.sqlite"


def resolve_store_url(value: str | None = None) -> URL:
    """The store URL from an explicit value, the environment or the default path."""
    raw = value if value is not None else os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        if value is not None:
            raise InputError("--store is empty (give a file path, sqlite:///PATH or postgresql://...)")
        raw = str(default_store_path())
    return parse_store_url(raw)


def parse_store_url(raw: str) -> URL:
    raw = raw.strip()
    if "://" not in raw:
        return URL.create("sqlite", database=str(Path(raw).expanduser()))
    scheme = raw.split("://", 1)[0]
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        # The text may hold a password, so only the scheme is repeated back.
        raise InputError(
            f"invalid store URL with scheme {scheme!r} (expected sqlite:///PATH or postgresql://...)"
        ) from None
    if url.drivername in _SQLITE_NAMES:
        if not url.database or url.database == ":memory:":
            raise InputError("a SQLite store needs a file path (sqlite:///PATH), not an in-memory database")
        return url.set(drivername="sqlite", database=str(Path(url.database).expanduser()))
    if url.drivername in _POSTGRES_NAMES:
        if not url.database:
            raise InputError(f"store {display_url(url)}: the URL names no database (postgresql://USER@HOST/DATABASE)")
        return url.set(drivername="postgresql+psycopg")
    raise InputError(
        f"unsupported store {scheme!r}: use a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"
    )


def display_url(url: URL) -> str:
    """The URL with its password (in the authority or in the query string) masked."""
    if "password" not in url.query:
        return url.render_as_string(hide_password=True)
    placeholder = "REDACTEDPASSWORD"  # survives URL encoding, unlike the mask itself
    shown = url.update_query_dict({"password": placeholder}).render_as_string(hide_password=True)
    return shown.replace(placeholder, _MASK)


def _secrets(url: URL) -> list[str]:
    values = [url.password, url.query.get("password")]
    secrets: list[str] = []
    for value in values:
        if isinstance(value, tuple):
            secrets.extend(value)
        elif value:
            secrets.append(value)
    # A driver may echo the password decoded or percent-encoded; mask every spelling, longest
    # first so that a shorter spelling never leaves part of a longer one behind.
    spellings = {s for v in secrets for s in (v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v))}
    return sorted(spellings, key=len, reverse=True)


def scrub(message: str, url: URL) -> str:
    """A driver or library message with every spelling of the store password masked."""
    for secret in _secrets(url):
        message = message.replace(secret, _MASK)
    return message
