"""A real PostgreSQL server for tests, reusable by any test that needs one.

The server is initialised in a fresh temporary directory, listens only on a unix socket in that
directory (no TCP port, so it can clash with nothing, including a cluster Debian's package may
have started), requires a password (scram-sha-256) from every client, and is stopped and
removed at the end: on success, failure and Ctrl-C (pytest finalises session fixtures on
KeyboardInterrupt). A server left behind by a killed session is stopped at the start of the
next one. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres``
system user (created by Debian's postgresql package) through ``runuser``.

Use the session fixture ``postgres_server`` (registered in tests/conftest.py), or
``PostgresServer.start()`` / ``stop()`` directly. Set ``PREAUDIT_SKIP_POSTGRES=1`` to skip
the tests that need it; ``PREAUDIT_TEST_PG_ROOT`` moves the temporary directories.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

PG_ROOT = Path(os.environ.get("PREAUDIT_TEST_PG_ROOT", tempfile.gettempdir()))
DIR_PREFIX = "preaudit-test-pg-"
SERVER_USER = "postgres"
ROLE = "preaudit_test"
PORT = 5432  # only names the socket file; the server listens on no TCP port


class PostgresUnavailable(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: ``pg_config --bindir``, the newest Debian install, or PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += debian
    if shutil.which("initdb"):
        candidates.append(Path(str(shutil.which("initdb"))).resolve().parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server programs (initdb, pg_ctl, postgres) not found; run ./scripts/setup.sh "
        "(it installs Debian's postgresql package) or set PREAUDIT_SKIP_POSTGRES=1"
    )


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout)[-1500:]}")


def _owner_ids() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(f"no {SERVER_USER!r} system user to run PostgreSQL as (install postgresql)") from None
    return entry.pw_uid, entry.pw_gid


@dataclass
class PostgresServer:
    root: Path
    bindir: Path
    # Kept out of repr(): pytest prints the objects of a failing assertion.
    superuser_password: str = field(repr=False)
    role_password: str = field(repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str, *, password: str | None = None) -> str:
        """A ``postgresql://`` URL for the test role, over the unix socket, password percent-encoded."""
        url = URL.create(
            "postgresql",
            username=ROLE,
            password=self.role_password if password is None else password,
            database=database,
            query={"host": str(self.socket_dir), "port": str(PORT)},
        )
        return url.render_as_string(hide_password=False)

    def admin(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=PORT,
            user=SERVER_USER,
            password=self.superuser_password,
            dbname=database,
            autocommit=True,
        )

    def create_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE)))

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @classmethod
    def start(cls, owner_pid: int | None = None) -> PostgresServer:
        """Start a server owned by ``owner_pid`` (default: this process); when that process is
        gone, :func:`remove_stale_servers` stops it."""
        bindir = postgres_bindir()
        uid, gid = _owner_ids()
        owner = os.getpid() if owner_pid is None else owner_pid
        root = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{owner}-", dir=PG_ROOT))
        # Passwords with URL-special characters, so that encoding and redaction are tested for real.
        server = cls(root, bindir, f"su-{secrets.token_hex(12)}", f"pw@{secrets.token_hex(12)}/%")
        try:
            os.chown(root, uid, gid)
            pwfile = root / "superuser.pw"
            pwfile.write_text(server.superuser_password + "\n")
            pwfile.chmod(0o600)
            os.chown(pwfile, uid, gid)
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(server.data_dir),
                    "-U",
                    SERVER_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                "initdb",
            )
            pwfile.unlink()
            # No TCP listener; the socket lives in the private directory. fsync off: a test
            # server's data need not survive a power cut, and the tests run faster.
            options = f"-h '' -k {server.socket_dir} -p {PORT} -c fsync=off -c max_connections=40"
            log = server.root / "server.log"
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(server.data_dir),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                "pg_ctl start",
            )
            with server.admin() as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(server.role_password)
                    )
                )
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        stop_server_dir(self.root, self.bindir)


def stop_server_dir(root: Path, bindir: Path | None = None) -> None:
    """Stop the server whose data lives under ``root`` (if it runs) and remove the directory."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            pg_ctl = str((bindir or postgres_bindir()) / "pg_ctl")
            try:
                _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], "pg_ctl stop")
            except PostgresUnavailable:
                _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], "pg_ctl stop")
    shutil.rmtree(root, ignore_errors=True)


def remove_stale_servers() -> None:
    """Stop servers left by test sessions that no longer run (their pid is in the directory name)."""
    for root in PG_ROOT.glob(f"{DIR_PREFIX}*"):
        try:
            pid = int(root.name[len(DIR_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop_server_dir(root)
        except PermissionError:
            continue  # a live process of another user


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if os.environ.get("PREAUDIT_SKIP_POSTGRES") == "1":
        pytest.skip("PREAUDIT_SKIP_POSTGRES=1: PostgreSQL tests disabled")
    remove_stale_servers()
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
