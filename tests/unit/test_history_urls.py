"""Store URLs: what is accepted, the default location, and that a password is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanners.errors import InputError, PreauditError
from scanners.history.store import describe_error, open_store
from scanners.history.urls import ENV_VAR, default_store_path, display_url, parse_store_url, resolve_store_url, scrub

SECRET = "s3cr@t/pw% x"
ENCODED = "s3cr%40t%2Fpw%25%20x"  # urllib.parse.quote(SECRET, safe="")
PLUS_ENCODED = "s3cr%40t%2Fpw%25+x"  # urllib.parse.quote_plus(SECRET)


def test_bare_path_and_sqlite_url_are_sqlite_files(tmp_path: Path) -> None:
    bare = parse_store_url(str(tmp_path / "h.sqlite"))
    assert (bare.drivername, bare.database) == ("sqlite", str(tmp_path / "h.sqlite"))
    url = parse_store_url(f"sqlite:///{tmp_path}/x.db")
    assert (url.drivername, url.database) == ("sqlite", f"{tmp_path}/x.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg3(scheme: str) -> None:
    url = parse_store_url(f"{scheme}://audit:{ENCODED}@db.example:5433/history")
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "audit",
        SECRET,
        "db.example",
        5433,
        "history",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://u:pw@host/db", "unsupported store 'mysql'"),
        ("sqlite://", "needs a file path"),
        ("sqlite:///:memory:", "needs a file path"),
        ("postgresql://u:pw@host", "names no database"),
        ("postgresql://u:pw@host:notaport/db", "invalid store URL with scheme 'postgresql'"),
    ],
)
def test_bad_store_urls_are_input_errors_without_the_password(raw: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_store_url(raw)
    assert message in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_store_comes_from_argument_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.sqlite"))
    assert resolve_store_url(str(tmp_path / "arg.sqlite")).database == str(tmp_path / "arg.sqlite")
    assert resolve_store_url(None).database == str(tmp_path / "env.sqlite")
    monkeypatch.delenv(ENV_VAR)
    assert resolve_store_url(None).database == str(default_store_path())
    with pytest.raises(InputError, match="--store is empty"):
        resolve_store_url("  ")


def test_default_location_follows_xdg_state_for_other_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "preaudit" / "history.sqlite"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_store_path() == Path("/var/lib/preaudit/history.sqlite")


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql://audit:{ENCODED}@db.example/history",
        f"postgresql://audit@db.example/history?password={ENCODED}",
    ],
)
def test_display_and_scrub_hide_every_spelling_of_the_password(raw: str) -> None:
    url = parse_store_url(raw)
    shown = display_url(url)
    assert "***" in shown
    assert SECRET not in shown and ENCODED not in shown and "s3cr" not in shown
    echoed = f'FATAL: password "{SECRET}" rejected; dsn had {ENCODED}, form had {PLUS_ENCODED}'
    cleaned = scrub(echoed, url)
    assert "s3cr" not in cleaned
    assert cleaned.count("***") == 3


def test_connection_error_is_one_line_without_password(tmp_path: Path) -> None:
    # Nothing listens on this socket directory: the driver fails and its message is shown scrubbed.
    url = f"postgresql://audit:{ENCODED}@/history?host={tmp_path}&port=5999"
    with pytest.raises(PreauditError) as caught:
        open_store(url)
    text = str(caught.value)
    assert "\n" not in text
    assert "s3cr" not in text
    assert "audit:***@" in text
    assert "5999" in text  # the driver's own words explain where it tried


def test_describe_error_keeps_one_line() -> None:
    url = parse_store_url(f"postgresql://audit:{ENCODED}@h/db")
    error = RuntimeError(f"first line {SECRET}\n\n  second line\n")
    assert describe_error(error, url) == "first line ***; second line"


def test_missing_sqlite_store_is_not_created_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "missing.sqlite"
    with pytest.raises(InputError, match="does not exist yet"):
        open_store(str(path), create=False)
    assert not path.exists()
    with open_store(str(path)) as store:
        assert store.backend == "sqlite"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(InputError, match="is not a file"):
        open_store(str(tmp_path))
