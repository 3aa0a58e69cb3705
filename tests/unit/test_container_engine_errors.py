"""An engine that cannot be reached is one clear error finding within the timeout, never a traceback.

Real sockets, no engine: a path with no socket, a socket nobody listens on, and a listener that
accepts connections and never answers.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.containers import scan_docker_runtime
from scanners.containers.runtime import display_url
from scanners.errors import InputError
from scanners.findings import Finding, ResourceKind, Status
from scanners.scanning import ScanContext

TIMEOUT = 1.5


def _scan(url: str) -> tuple[list[Finding], float]:
    findings: list[Finding] = []
    started = time.monotonic()
    scan_docker_runtime(ScanContext(default_catalog(), findings.append), url, host="ctl", timeout=TIMEOUT)
    return findings, time.monotonic() - started


def _assert_one_error(findings: list[Finding], url: str, reason: str) -> None:
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.control_id, finding.status) == ("SCAN-001", Status.ERROR)
    assert finding.resource.kind is ResourceKind.HOST
    assert (finding.resource.host, finding.resource.endpoint) == ("ctl", url)
    assert finding.message == f"cannot reach the Docker Engine at {url}: {reason}"
    assert "\n" not in finding.message


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte limit of a unix socket path.
    with tempfile.TemporaryDirectory(prefix="pa-sock-") as name:
        yield Path(name)


def test_absent_socket(short_dir: Path) -> None:
    url = f"unix://{short_dir / 'docker.sock'}"
    findings, elapsed = _scan(url)
    _assert_one_error(findings, url, "no such socket")
    assert elapsed < TIMEOUT


def test_socket_nobody_listens_on(short_dir: Path) -> None:
    path = short_dir / "docker.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))  # bound but not listening: connect() is refused
    try:
        findings, elapsed = _scan(f"unix://{path}")
    finally:
        bound.close()
    _assert_one_error(findings, f"unix://{path}", "connection refused: nothing is listening")
    assert elapsed < TIMEOUT


def test_listener_that_never_answers(short_dir: Path) -> None:
    path = short_dir / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        findings, elapsed = _scan(f"unix://{path}")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
    assert accepted, "the scanner did connect"
    _assert_one_error(findings, f"unix://{path}", f"no answer within {TIMEOUT:g} s")
    assert TIMEOUT <= elapsed < TIMEOUT + 3


def test_tcp_port_nobody_listens_on() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    url = f"tcp://127.0.0.1:{port}"
    findings, _ = _scan(url)
    _assert_one_error(findings, url, "connection refused: nothing is listening")


def test_passwords_in_the_engine_url_are_not_shown() -> None:
    assert display_url("tcp://ops:hunter2@10.0.0.5:2376") == "tcp://ops:***@10.0.0.5:2376"
    assert display_url("unix:///var/run/docker.sock") == "unix:///var/run/docker.sock"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("docker.sock", "unsupported address"),
        ("ftp://host/docker", "unsupported address"),
        ("unix://", "no socket path or host name"),
    ],
)
def test_malformed_engine_address_is_an_input_error_before_any_finding(url: str, message: str) -> None:
    findings: list[Finding] = []
    with pytest.raises(InputError, match=message):
        scan_docker_runtime(ScanContext(default_catalog(), findings.append), url)
    assert findings == []
