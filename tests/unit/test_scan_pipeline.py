"""The scan pipeline's mechanics with small fake scanners, and `preaudit scan` on local targets."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanners import pipeline as pipeline_module
from scanners.catalog import default_catalog
from scanners.cli import main
from scanners.cli.scan_cmd import parse_scanners, parse_tls_target
from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Status
from scanners.findings_file import FindingsStream, read_document, read_stream
from scanners.pipeline import JobKey, Pipeline, ScanOptions, run_scan
from scanners.scanning import ScanContext, TlsEndpoint, error_finding

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def finding(host: str, n: int, status: Status = Status.FAIL) -> Finding:
    control = default_catalog().get("SSH-001")
    return control.finding(
        status, Resource(ResourceKind.HOST, host=host), "fake", evidence=Evidence(observed=n), discriminator=str(n)
    )


class Recording:
    """A progress sink that remembers every call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, JobKey, str | None]] = []

    def _add(self, what: str, key: JobKey, extra: str | None = None) -> None:
        with self.lock:
            self.calls.append((what, key, extra))

    def job_added(self, key: JobKey) -> None:
        self._add("added", key)

    def job_started(self, key: JobKey) -> None:
        self._add("started", key)

    def job_message(self, key: JobKey, message: str) -> None:
        self._add("message", key, message)

    def job_finished(self, key: JobKey, error: str | None) -> None:
        self._add("finished", key, error)

    def finding(self, key: JobKey, finding: Finding) -> None:
        self._add("finding", key, finding.fingerprint)

    def finished(self) -> dict[JobKey, str | None]:
        return {k: e for what, k, e in self.calls if what == "finished"}


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[FindingsStream]:
    with FindingsStream(tmp_path / "findings.jsonl") as handle:
        yield handle


def test_parallel_jobs_stream_every_finding_once_and_a_raising_scanner_becomes_an_error(
    stream: FindingsStream, tmp_path: Path
) -> None:
    progress = Recording()
    pipe = Pipeline(default_catalog(), stream=stream, progress=progress, workers=4)

    def scanner(host: str) -> pipeline_module.JobFn:
        def run(ctx: ScanContext) -> None:
            for n in range(50):
                ctx.emit(finding(host, n))
                ctx.progress(f"{n} done")

        return run

    def broken(ctx: ScanContext) -> None:
        ctx.emit(finding("h-broken", 1))
        raise RuntimeError("engine exploded\nwith a traceback-like second line")

    for host in ("h1", "h2", "h3"):
        pipe.submit(host, "fake", scanner(host))
    pipe.submit("h-broken", "fake", broken, Resource(ResourceKind.HOST, host="h-broken"))
    assert pipe.wait(timeout=30)
    findings = pipe.close()
    pipe.shutdown()

    assert len(findings) == 3 * 50 + 2
    assert sorted(f.fingerprint for f in read_stream(tmp_path / "findings.jsonl")) == sorted(
        f.fingerprint for f in findings
    )
    error = next(f for f in findings if f.control_id == "SCAN-001")
    assert error.status is Status.ERROR and error.resource.host == "h-broken"
    assert error.message == "fake scanner failed on h-broken: RuntimeError: engine exploded"
    finished = progress.finished()
    assert finished[JobKey("h1", "fake")] is None
    assert finished[JobKey("h-broken", "fake")] == error.message
    assert sum(1 for what, *_ in progress.calls if what == "finding") == len(findings)


def test_jobs_may_submit_jobs_and_wait_covers_them() -> None:
    pipe = Pipeline(default_catalog(), workers=2)
    order: list[str] = []

    def child(ctx: ScanContext) -> None:
        time.sleep(0.2)
        order.append("child")
        ctx.emit(finding("h", 2))

    def parent(ctx: ScanContext) -> None:
        order.append("parent")
        pipe.submit("h", "child", child)
        ctx.emit(finding("h", 1))

    pipe.submit("h", "parent", parent)
    assert pipe.wait(timeout=10)
    assert order == ["parent", "child"]
    assert len(pipe.close()) == 2
    pipe.shutdown()


def test_cancel_stops_scheduling_tells_running_scanners_and_drops_late_findings() -> None:
    progress = Recording()
    pipe = Pipeline(default_catalog(), progress=progress, workers=2)
    both_running = threading.Barrier(3)

    def slow(ctx: ScanContext) -> None:
        both_running.wait(5)
        ctx.emit(finding("h", 1))
        assert ctx.cancelled.wait(10)
        ctx.emit(finding("h", 2))  # noticed the stop, reports what it had

    def never(ctx: ScanContext) -> None:
        raise AssertionError("a cancelled scan started a queued job")

    pipe.submit("h", "slow", slow)
    pipe.submit("h2", "blocker", slow)
    pipe.submit("h3", "queued", never)
    both_running.wait(5)
    pipe.cancel()
    assert pipe.submit("h4", "late", never) is False
    assert pipe.wait(timeout=10)
    findings = pipe.close()
    pipe.emit(JobKey("h", "slow"), finding("h", 3))  # after close: dropped
    assert len(pipe.findings) == len(findings) == 4
    assert progress.finished()[JobKey("h3", "queued")] == "cancelled"
    pipe.shutdown()


def test_one_scanner_wide_error_reported_by_many_jobs_is_kept_once() -> None:
    pipe = Pipeline(default_catalog(), workers=2)
    catalog = default_catalog()

    def no_db(ctx: ScanContext) -> None:
        ctx.emit(error_finding(catalog, "dependencies", Resource(ResourceKind.SCANNER), "no database", "DEP-001"))

    for host in ("a", "b", "c"):
        pipe.submit(host, "dependencies", no_db)
    assert pipe.wait(timeout=10)
    assert len(pipe.close()) == 1
    pipe.shutdown()


def test_argument_parsing() -> None:
    assert parse_tls_target("127.0.0.1:8443=montecarlo.lab") == TlsEndpoint("127.0.0.1", 8443, "montecarlo.lab")
    assert parse_tls_target("[::1]:443") == TlsEndpoint("::1", 443, None)
    assert parse_tls_target("example.com:443") == TlsEndpoint("example.com", 443, None)
    for bad in ("example.com", "example.com:0", "example.com:http", ":443", "[::1]443"):
        with pytest.raises(InputError, match="HOST:PORT"):
            parse_tls_target(bad)
    assert parse_scanners("host, tls") == frozenset({"host", "tls"})
    with pytest.raises(InputError, match="unknown lynis"):
        parse_scanners("host,lynis")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to scan: give --inventory, --code, --tls or --docker"),
        (("--code", "/nonexistent/tree"), "--code /nonexistent/tree: no such file or directory"),
        (("--tls", "host-without-port"), "expected HOST:PORT[=SERVERNAME]"),
        (("--code", ".", "--scanners", "code,nmap"), "unknown nmap"),
        (("--code", ".", "--fail-on", "severe"), "--fail-on: unknown severity 'severe'"),
        (("--inventory", "/nonexistent/hosts.yml"), "inventory /nonexistent/hosts.yml does not exist"),
        (("--docker", "ftp://engine"), "unsupported address"),
        (("--tls", "127.0.0.1:443", "--ca-file", "/nonexistent/ca.crt"), "/nonexistent/ca.crt"),
        (("--code", ".", "--fail-on-regression"), "--fail-on-regression needs --record or --store"),
    ],
)
def test_input_errors_exit_2_before_anything_is_scanned(
    args: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["scan", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


@pytest.fixture
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PREAUDIT_SECRET_SALT", "unit-test-salt-0123456789")


@pytest.mark.usefixtures("isolated_caches")
def test_scan_of_a_local_tree_writes_the_stream_and_a_valid_final_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scanners.vulndb import import_snapshot

    db = tmp_path / "vulndb"
    import_snapshot(DATA / "advisories", db)
    tree = tmp_path / "platform"
    tree.mkdir()
    lab = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo"
    for name in ("Dockerfile", "docker-compose.yml", "requirements.txt"):
        (tree / name).write_bytes((lab / name).read_bytes())
    (tree / "app").mkdir()
    (tree / "app" / "admin.py").write_bytes((lab / "app" / "admin.py").read_bytes())
    out = tmp_path / "out"

    code = main(["scan", "--code", str(tree), "--vuln-db", str(db), "--out", str(out), "--fail-on", "critical"])
    assert code == 1  # a privileged Compose service is critical
    document = read_document(out / "findings.json")  # schema-validated
    streamed = read_stream(out / "findings.jsonl")
    assert sorted(f.fingerprint for f in streamed) == sorted(f.fingerprint for f in document.findings)
    scan = document.scan
    assert scan.complete is True
    assert scan.scanners == ["code", "containers", "dependencies", "host", "secrets", "tls"]
    assert scan.targets == {"code": [str(tree)]}
    assert scan.vulndb is not None and scan.vulndb["kind"] == "pypa-advisory-database"
    assert {"ansible-core", "sslyze", "bandit", "detect-secrets", "pip-audit", "docker-sdk", "python"} <= set(
        document.components
    )
    by_scanner = {f.scanner for f in document.findings}
    assert by_scanner == {"code", "secrets", "dependencies", "containers"}
    controls = {f.control_id for f in document.findings if f.status is Status.FAIL}
    assert {"CODE-001", "SEC-101", "DEP-001", "CTR-C-001", "CTR-F-004"} <= controls
    assert all(f.resource.host is None for f in document.findings)
    assert "preaudit scan: failing findings by severity" in capsys.readouterr().out

    # A second scan into the same directory starts a new stream.
    assert main(["scan", "--code", str(tree), "--scanners", "code", "--out", str(out)]) == 0
    assert {f.scanner for f in read_stream(out / "findings.jsonl")} == {"code"}


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's Ctrl-C handler, even where a shell started the tests with SIGINT ignored (CI's background jobs)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def silent_listener() -> socket.socket:
    """A port that accepts and never answers: a TLS probe of it waits for its timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    return silent


@pytest.mark.usefixtures("isolated_caches", "ctrl_c_raises")
def test_ctrl_c_writes_an_incomplete_document_from_what_was_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "CANCEL_GRACE_SECONDS", 1.0)
    silent = silent_listener()
    port = silent.getsockname()[1]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text("import pickle\npickle.loads(b'')\n")
    options = ScanOptions(
        out=tmp_path / "out",
        code=[tree],
        tls=[TlsEndpoint("127.0.0.1", port)],
        scanners=frozenset({"code", "tls"}),
        timeout=60.0,
    )
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        started = time.monotonic()
        outcome = run_scan(options, default_catalog())
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        silent.close()
    assert outcome.interrupted
    assert elapsed < 30  # the grace period is 1 s here; the rest is a loaded machine
    document = read_document(outcome.findings_path)
    assert document.scan.complete is False
    assert "B301" in {f.rule for f in document.findings if f.control_id == "CODE-001"}
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["scan"]["complete"] is False


@pytest.mark.usefixtures("isolated_caches")
def test_sigterm_ends_a_scan_like_ctrl_c_and_writes_what_was_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pipeline_module, "CANCEL_GRACE_SECONDS", 1.0)
    silent = silent_listener()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text("import pickle\npickle.loads(b'')\n")
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = main(
            [
                "scan",
                "--code",
                str(tree),
                "--tls",
                f"127.0.0.1:{silent.getsockname()[1]}",
                "--scanners",
                "code,tls",
                "--timeout",
                "60",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
    finally:
        timer.cancel()
        silent.close()
    assert code == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler does not outlive it
    document = read_document(out / "findings.json")
    assert document.scan.complete is False
    assert "B301" in {f.rule for f in document.findings if f.control_id == "CODE-001"}
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.usefixtures("isolated_caches")
def test_store_records_each_scan_and_a_regression_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "platform"
    tree.mkdir()
    compose = tree / "docker-compose.yml"
    compose.write_text("services:\n  web:\n    image: nginx:1.27\n")
    store = f"sqlite:///{tmp_path / 'history.sqlite'}"
    common = ["scan", "--code", str(tree), "--scanners", "containers", "--store", store, "--fail-on-regression"]

    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert "recorded scan" in capsys.readouterr().out
    compose.write_text("services:\n  web:\n    image: nginx:1.27\n    privileged: true\n")
    assert main([*common, "--out", str(tmp_path / "two")]) == 4
    out = capsys.readouterr().out
    assert "regression: CTR-C-001 fails on" in out
