"""`preaudit scan`: every scanner in parallel over the fleet and local targets, live progress, findings files."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from scanners.errors import EXIT_FINDINGS, EXIT_OK, InputError
from scanners.findings import Finding, Severity, Status
from scanners.host_scan import DEFAULT_HOST_FILES, InventoryHost, load_inventory
from scanners.pipeline import SCANNERS, JobKey, ScanOptions, ScanOutcome, run_scan
from scanners.scanning import TlsEndpoint

EXIT_INTERRUPTED = 130
STORE_ENV_VAR = "PREAUDIT_STORE"
_SCANNER_ORDER = {name: i for i, name in enumerate(("host", "files", *SCANNERS, "docker"))}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = sub.add_parser(
        "scan",
        help="run the scanners in parallel over hosts, code trees, TLS endpoints and Docker Engines",
        description="Scan an inventory's hosts (host audit, their TLS ports and files, optionally their "
        "Docker Engines), local code trees, TLS endpoints and Docker Engines in parallel. Findings are "
        "written as they arrive to OUT/findings.jsonl and at the end to OUT/findings.json (also when "
        "interrupted: then complete is false and the exit code 130).",
    )
    targets = scan.add_argument_group("what to scan")
    targets.add_argument("--inventory", type=Path, metavar="INV", help="Ansible inventory of the hosts to scan")
    targets.add_argument("--limit", metavar="PATTERN", help="only the inventory hosts matching this Ansible pattern")
    targets.add_argument(
        "--code",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH",
        help="local trees or files: code, secrets, dependencies and container files",
    )
    targets.add_argument(
        "--tls",
        nargs="+",
        action="extend",
        default=[],
        metavar="HOST:PORT[=NAME]",
        help="TLS endpoints; NAME is the server name to ask for (SNI) and to check the certificate against",
    )
    targets.add_argument(
        "--docker",
        nargs="+",
        action="extend",
        default=[],
        metavar="SOCKET",
        help="Docker Engines to check at runtime: a socket path, unix://, tcp:// or ssh:// address",
    )
    targets.add_argument(
        "--docker-hosts",
        action="store_true",
        help="also check each inventory host's Docker Engine at runtime (relayed over SSH, with sudo)",
    )
    targets.add_argument(
        "--host-files",
        nargs="+",
        action="extend",
        metavar="GLOB",
        help="absolute globs of files fetched from each host for the file scanners, besides the files "
        "discovery finds there (systemd units, nginx, Compose projects, a sweep of the usual application roots)",
    )

    how = scan.add_argument_group("how")
    how.add_argument(
        "--scanners",
        default=",".join(SCANNERS),
        metavar="LIST",
        help=f"comma-separated scanners to run (default: {','.join(SCANNERS)})",
    )
    how.add_argument("--vuln-db", type=Path, metavar="PATH", help="offline vulnerability database (see `vulndb`)")
    how.add_argument("--secrets-baseline", type=Path, metavar="FILE", help="detect-secrets baseline of known secrets")
    how.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="CA certificates TLS-006 trusts (default: the inventory's preaudit_tls_ca_file, the lab CA when it "
        "exists, else the system store)",
    )
    how.add_argument("--tls-profile", default="intermediate", choices=("intermediate", "modern"))
    how.add_argument("--forks", type=int, metavar="N", help="parallel hosts (default: ansible.cfg's forks)")
    how.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="network timeout: SSH connection, TLS handshake, Docker API (default 10)",
    )
    how.add_argument(
        "--host-timeout", type=int, default=300, metavar="SECONDS", help="limit per host module call (default 300)"
    )
    how.add_argument("--workers", type=int, default=6, metavar="N", help="scanner jobs run at once (default 6)")

    out = scan.add_argument_group("output")
    out.add_argument(
        "--out", type=Path, default=Path("out/scan"), metavar="DIR", help="output directory (default ./out/scan)"
    )
    out.add_argument("--fail-on", metavar="SEVERITY", help="exit 1 if a failing finding is at or above SEVERITY")
    out.add_argument(
        "--store",
        metavar="URL",
        help=f"record the scan in this history store (default with --record: ${STORE_ENV_VAR} or the default store)",
    )
    out.add_argument("--record", action="store_true", help="record the scan in the history store")
    out.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 4 when a control that passed in its previous recorded scan fails in this one",
    )
    out.add_argument("--no-progress", action="store_true", help="no live display (plain progress lines instead)")
    scan.set_defaults(func=_scan)


# --- arguments -------------------------------------------------------------------------------


def parse_scanners(value: str) -> frozenset[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SCANNERS]
    if unknown or not names:
        raise InputError(f"--scanners: unknown {', '.join(unknown) or 'empty list'} (choose from {','.join(SCANNERS)})")
    return frozenset(names)


def parse_tls_target(value: str) -> TlsEndpoint:
    """``HOST:PORT[=SERVERNAME]``; an IPv6 address goes in brackets (``[::1]:443``)."""
    target, _sep, server_name = value.partition("=")
    if target.startswith("["):
        address, bracket, rest = target[1:].partition("]")
        port_text = rest[1:] if bracket and rest.startswith(":") else ""
    else:
        address, _sep, port_text = target.rpartition(":")
    if not address or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"--tls {value!r}: expected HOST:PORT[=SERVERNAME] with a port from 1 to 65535")
    return TlsEndpoint(address=address, port=int(port_text), server_name=server_name or None)


def docker_url(value: str) -> str:
    from scanners.containers.runtime import check_docker_host

    url = value if "://" in value else f"unix://{Path(value).absolute()}"
    check_docker_host(url)
    return url


def default_ca_file(hosts: list[InventoryHost]) -> Path | None:
    """The CA the inventory names (``preaudit_tls_ca_file``; `lab up` writes the lab CA there)."""
    for host in hosts:
        named = host.vars.get("preaudit_tls_ca_file")
        if named:
            return Path(str(named))
    return None


def _readable(path: Path | None, what: str) -> None:
    if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
        raise InputError(f"{what} {path}: no such readable file")


def build_options(args: argparse.Namespace) -> ScanOptions:
    """Validate every argument before anything is scanned (InputError: exit 2)."""
    scanners = parse_scanners(args.scanners)
    tls = [parse_tls_target(v) for v in args.tls]
    docker = [docker_url(v) for v in args.docker]
    for path in args.code:
        if not path.exists():
            raise InputError(f"--code {path}: no such file or directory")
    _readable(args.secrets_baseline, "--secrets-baseline")
    if args.forks is not None and args.forks < 1:
        raise InputError(f"--forks must be at least 1, not {args.forks}")
    if args.workers < 2:
        raise InputError(f"--workers must be at least 2 (the fleet's run occupies one), not {args.workers}")
    if args.host_timeout < 1:
        raise InputError(f"--host-timeout must be at least 1 second, not {args.host_timeout}")
    if args.docker_hosts and args.inventory is None:
        raise InputError("--docker-hosts needs --inventory")
    if args.limit and args.inventory is None:
        raise InputError("--limit needs --inventory")
    host_files = (*DEFAULT_HOST_FILES, *(args.host_files or ()))
    relative = [p for p in host_files if not p.startswith("/")]
    if relative:
        raise InputError(f"--host-files must be absolute globs: {', '.join(relative)}")
    hosts = load_inventory(args.inventory, args.limit) if args.inventory is not None else []
    if not (hosts or args.code or tls or docker):
        raise InputError("nothing to scan: give --inventory, --code, --tls or --docker")
    ca_file = args.ca_file if args.ca_file is not None else default_ca_file(hosts)
    if "tls" in scanners:
        from scanners.tls.settings import build_settings

        build_settings(
            timeout=args.timeout, min_days_valid=30, ca_file=ca_file, profile=args.tls_profile, hsts_min_age=0
        )
    elif not args.timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    return ScanOptions(
        out=args.out,
        scanners=scanners,
        inventory=args.inventory,
        hosts=hosts,
        code=list(args.code),
        tls=tls,
        docker=docker,
        docker_hosts=args.docker_hosts,
        vuln_db=args.vuln_db,
        secrets_baseline=args.secrets_baseline,
        ca_file=ca_file,
        tls_profile=args.tls_profile,
        host_files=host_files,
        forks=args.forks,
        timeout=args.timeout,
        host_timeout=args.host_timeout,
        workers=args.workers,
    )


# --- progress ------------------------------------------------------------------------------


class _Row:
    __slots__ = ("counts", "ended", "error", "message", "started", "state")

    def __init__(self) -> None:
        self.state = "queued"
        self.started: float | None = None
        self.ended: float | None = None
        self.error: str | None = None
        self.message = ""
        self.counts: Counter[Status] = Counter()


class LiveProgress:
    """Per source and scanner: state, findings by status, time, last message. Thread-safe."""

    def __init__(self, console: Console, live: bool) -> None:
        self.console = console
        self.live = live
        self.rows: dict[JobKey, _Row] = {}
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.total: Counter[Status] = Counter()

    def _row(self, key: JobKey) -> _Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row()
        return row

    def job_added(self, key: JobKey) -> None:
        with self.lock:
            self._row(key)

    def job_started(self, key: JobKey) -> None:
        with self.lock:
            row = self._row(key)
            row.state = "running"
            row.started = time.monotonic()

    def job_message(self, key: JobKey, message: str) -> None:
        with self.lock:
            self._row(key).message = message

    def job_finished(self, key: JobKey, error: str | None) -> None:
        with self.lock:
            row = self._row(key)
            row.ended = time.monotonic()
            row.state = "cancelled" if error == "cancelled" else ("error" if error else "done")
            row.error = error
        if not self.live:
            line = f"preaudit scan: {key.source} {key.scanner}: {row.state}"
            line += f" ({self._counts(row)})" if row.counts else ""
            if error and error != "cancelled":
                line += f": {error}"
            self.console.print(line, markup=False, highlight=False)

    def finding(self, key: JobKey, finding: Finding) -> None:
        with self.lock:
            row = self._row(key)
            row.counts[finding.status] += 1
            self.total[finding.status] += 1

    @staticmethod
    def _counts(row: _Row) -> str:
        parts = [f"{row.counts[s]} {s.value}" for s in (Status.FAIL, Status.ERROR, Status.PASS) if row.counts[s]]
        return ", ".join(parts)

    def __rich__(self) -> Group:
        now = time.monotonic()
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column, justify in (
            ("source", "left"),
            ("scanner", "left"),
            ("state", "left"),
            ("fail", "right"),
            ("error", "right"),
            ("pass", "right"),
            ("time", "right"),
            ("", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        with self.lock:
            items = sorted(self.rows.items(), key=lambda kv: (kv[0].source, _SCANNER_ORDER.get(kv[0].scanner, 99)))
            for key, row in items:
                state: Any
                if row.state == "running":
                    state = Spinner("dots", text="running", style="cyan")
                else:
                    style = {"done": "green", "error": "red", "cancelled": "yellow"}.get(row.state, "dim")
                    state = Text(row.state, style=style)
                elapsed = ""
                if row.started is not None:
                    elapsed = f"{(row.ended or now) - row.started:.1f}s"
                table.add_row(
                    key.source,
                    key.scanner,
                    state,
                    Text(str(row.counts[Status.FAIL] or ""), style="red"),
                    Text(str(row.counts[Status.ERROR] or ""), style="magenta"),
                    str(row.counts[Status.PASS] or ""),
                    elapsed,
                    Text((row.error or row.message)[:60], style="dim"),
                )
            total = sum(self.total.values())
        header = Text(f"preaudit scan: {total} findings, {now - self.started:.0f}s", style="bold")
        return Group(header, table)


# --- summary -------------------------------------------------------------------------------


def _source_of(finding: Finding) -> str:
    return finding.resource.host or finding.resource.endpoint or finding.resource.path or finding.scanner


def print_summary(console: Console, outcome: ScanOutcome) -> None:
    findings = outcome.document.findings
    by_source: dict[str, Counter[str]] = {}
    for finding in findings:
        counts = by_source.setdefault(_source_of(finding), Counter())
        if finding.status is Status.FAIL:
            counts[finding.severity.value] += 1
        counts[finding.status.value] += 1
    table = Table(title="preaudit scan: failing findings by severity", header_style="bold")
    table.add_column("host / target")
    for severity in Severity:
        table.add_column(severity.value, justify="right")
    for status in ("error", "pass", "not_applicable"):
        table.add_column(status.replace("_", " "), justify="right")
    for source in sorted(by_source):
        counts = by_source[source]
        table.add_row(
            source,
            *(str(counts[s.value] or "") for s in Severity),
            *(str(counts[s] or "") for s in ("error", "pass", "not_applicable")),
        )
    total: Counter[str] = Counter()
    for counts in by_source.values():
        total.update(counts)
    table.add_section()
    table.add_row(
        "all",
        *(str(total[s.value]) for s in Severity),
        *(str(total[s]) for s in ("error", "pass", "not_applicable")),
        style="bold",
    )
    console.print(table)
    state = "INTERRUPTED (complete: false)" if outcome.interrupted else "complete"
    console.print(f"scan {outcome.document.scan.id}: {len(findings)} findings in {outcome.seconds:.1f}s, {state}")
    console.print(f"findings: {outcome.findings_path} (stream: {outcome.stream_path}; raw outputs: {outcome.raw_dir})")


# --- the command ---------------------------------------------------------------------------


def _record(args: argparse.Namespace, outcome: ScanOutcome, console: Console) -> int:
    from scanners.errors import EXIT_REGRESSION
    from scanners.history.recording import record_scan
    from scanners.history.store import open_store

    with open_store(args.store, create=True) as store:
        result = record_scan(store, outcome.document)
        where = store.display
    console.print(f"recorded scan {result.scan_id} ({result.findings} findings) in {where}")
    for hit in result.regressions:
        console.print(f"regression: {hit.control_id} fails on {hit.resource}, passed in scan {hit.previous_scan}")
    if result.regressions:
        console.print(f"{len(result.regressions)} regression(s)")
    return EXIT_REGRESSION if args.fail_on_regression and result.regressions else EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    from scanners.catalog import default_catalog

    fail_on = None
    if args.fail_on is not None:
        try:
            fail_on = Severity.parse(args.fail_on)
        except ValueError as exc:
            raise InputError(f"--fail-on: {exc}") from None
    if args.fail_on_regression and not (args.record or args.store):
        raise InputError("--fail-on-regression needs --record or --store")
    options = build_options(args)
    catalog = default_catalog()
    err = Console(stderr=True)
    live = err.is_terminal and not args.no_progress
    progress = LiveProgress(err, live)

    def interrupted() -> None:
        err.print("preaudit scan: interrupted; stopping the scanners and writing what was collected")

    if live:
        with Live(progress, console=err, refresh_per_second=4, transient=False):
            outcome = run_scan(options, catalog, progress=progress, on_interrupt=interrupted)
    else:
        outcome = run_scan(options, catalog, progress=progress, on_interrupt=interrupted)
    out = Console(file=sys.stdout)
    print_summary(out, outcome)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    code = EXIT_OK
    if args.record or args.store:
        code = _record(args, outcome, out)
    if fail_on is not None:
        over = [f for f in outcome.document.findings if f.is_problem and f.severity.rank >= fail_on.rank]
        if over:
            err.print(f"preaudit: failing: {len(over)} failing finding(s) at or above {fail_on.value}")
            code = code or EXIT_FINDINGS
    return code
