"""The history store on a real PostgreSQL server, through the command line, and the test server itself.

The whole store suite (tests/unit/test_history_*.py) already runs on PostgreSQL through the
``store_url`` fixture; these tests cover what only a real server can show: its own
authentication failure never reveals the password, and the server the tests start is
private and does not outlive the session that started it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanners.findings_file import write_document
from tests.history_support import FAIL, PASS, at, scan
from tests.postgres_server import PostgresServer, remove_stale_servers

pytestmark = pytest.mark.postgres
PREAUDIT = str(Path(sys.executable).parent / "preaudit")


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"cli_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREAUDIT, *args], capture_output=True, text=True, check=False)


def _spellings(password: str) -> list[str]:
    return [password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)]


def test_cli_records_and_lists_on_postgresql_without_showing_the_password(
    postgres_server: PostgresServer, database: str, tmp_path: Path
) -> None:
    url = postgres_server.url(database)
    for scan_id, hours, status in (("s1", 0, PASS), ("s2", 5, FAIL)):
        path = tmp_path / f"{scan_id}.json"
        write_document(path, scan(scan_id, at(hours), {("SSH-002", "sim-1"): status}))
        result = _run("history", "record", str(path), "--store", url, "--fail-on-regression")
        assert result.returncode == (0 if scan_id == "s1" else 4), result.stderr
    listed = _run("history", "list", "--store", url)
    assert listed.returncode == 0, listed.stderr
    output = result.stdout + result.stderr + listed.stdout + listed.stderr
    assert "preaudit_test:***@" in output
    assert not [s for s in _spellings(postgres_server.role_password) if s in output]


def test_a_wrong_password_is_refused_by_the_server_and_never_shown(
    postgres_server: PostgresServer, database: str
) -> None:
    wrong = f"Wr0ng@{uuid.uuid4().hex}/"
    result = _run("history", "list", "--store", postgres_server.url(database, password=wrong))
    assert result.returncode == 3
    assert "password authentication failed" in result.stderr
    assert result.stderr.count("\n") == 1
    for secret in (wrong, postgres_server.role_password):
        assert not [s for s in _spellings(secret) if s in result.stderr + result.stdout]


def test_the_test_server_listens_only_on_its_private_socket(postgres_server: PostgresServer) -> None:
    with postgres_server.admin() as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert listen == ("",)
    assert sockets == (str(postgres_server.socket_dir),)


def _postmaster_pid(server: PostgresServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_left_by_a_dead_session_is_stopped_and_removed() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    server = PostgresServer.start(owner_pid=gone.pid)
    try:
        postmaster = _postmaster_pid(server)
        assert _running(postmaster)
        remove_stale_servers()
        deadline = time.monotonic() + 30
        while _running(postmaster) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(postmaster)
        assert not server.root.exists()
    finally:
        server.stop()
