"""How fast the history store records big scans and answers over a long history; prints seconds.

    .venv/bin/python bench/history_bench.py                      # SQLite in a temporary directory
    .venv/bin/python bench/history_bench.py --backend postgresql # a throw-away server (tests/postgres_server.py)
    .venv/bin/python bench/history_bench.py --store URL          # an existing, empty store

Steps: a history of --scans scans of --hosts x --controls findings each (about 10% failing,
flapping between scans so there are regressions), then a big scan of --big findings recorded
into that history; then the queries the CLI and the report make over the whole history.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanners.catalog import default_catalog
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.findings_file import FindingsDocument, new_document, read_document, write_document
from scanners.history.metrics import render_metrics
from scanners.history.period import build_period_summary
from scanners.history.queries import control_timelines, list_scans
from scanners.history.recording import record_scan
from scanners.history.store import open_store
from scanners.history.transfer import export_history

T = TypeVar("T")
START = datetime(2026, 6, 1, tzinfo=UTC)
SEVERITIES = list(Severity)


def timed(label: str, action: Callable[[], T]) -> T:
    began = time.perf_counter()
    result = action()
    print(f"{label:<58} {time.perf_counter() - began:8.3f} s", flush=True)
    return result


def failing_in(pairs: set[tuple[int, int]]) -> Callable[[int, int], bool]:
    return lambda host, control: (host, control) in pairs


def document(
    scan_id: str, when: datetime, hosts: int, controls: int, failing: Callable[[int, int], bool]
) -> FindingsDocument:
    doc = new_document(
        default_catalog(),
        id=scan_id,
        started_at=when,
        finished_at=when + timedelta(minutes=10),
        hosts=[f"host-{h:03d}" for h in range(hosts)],
        scanners=["host"],
    )
    refs = {"soc2": ["CC6.1"], "iso27001": ["A.8.5"], "nist-800-53": ["IA-2"]}
    for h in range(hosts):
        for c in range(controls):
            bad = failing(h, c)
            doc.findings.append(
                Finding(
                    control_id=f"BENCH-{c:04d}",
                    title=f"bench control {c}",
                    severity=SEVERITIES[c % len(SEVERITIES)],
                    status=Status.FAIL if bad else Status.PASS,
                    resource=Resource(ResourceKind.HOST, host=f"host-{h:03d}"),
                    scanner="host",
                    evidence=Evidence(observed="yes" if bad else "no", expected="no"),
                    references={**refs, "soc2": [f"CC{c % 9}.{c % 4}"]},
                    observed_at=when,
                )
            )
    return doc


@contextmanager
def store_url(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    if args.store:
        yield args.store
    elif args.backend == "sqlite":
        yield str(workdir / "bench.sqlite")
    else:
        from tests.postgres_server import PostgresServer

        server = PostgresServer.start()
        try:
            server.create_database("bench")
            yield server.url("bench")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--store", help="an existing empty store URL instead of a throw-away one")
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--controls", type=int, default=100)
    parser.add_argument("--big", type=int, default=20_000, help="findings in the big scan")
    args = parser.parse_args()
    rng = random.Random(1)

    with tempfile.TemporaryDirectory(prefix="preaudit-bench-") as tmp, store_url(args, Path(tmp)) as url:
        print(
            f"backend {args.backend if not args.store else 'given'}: {args.scans} scans x {args.hosts} hosts x "
            f"{args.controls} controls, then one scan of {args.big} findings"
        )
        with open_store(url) as store:
            began = time.perf_counter()
            for i in range(args.scans):
                flaky = {
                    (rng.randrange(args.hosts), rng.randrange(args.controls))
                    for _ in range(args.hosts * args.controls // 10)
                }
                record_scan(
                    store,
                    document(
                        f"scan-{i:04d}",
                        START + timedelta(hours=12 * i),
                        args.hosts,
                        args.controls,
                        failing_in(flaky),
                    ),
                )
            elapsed = time.perf_counter() - began
            label = f"record history (mean per scan of {args.hosts * args.controls} findings)"
            print(f"{label:<58} {elapsed / args.scans:8.3f} s")

            big_hosts = max(1, args.big // (args.controls * 10))
            big_controls = args.big // big_hosts
            big = document(
                "big", START + timedelta(hours=12 * args.scans), big_hosts, big_controls, lambda h, c: (h + c) % 10 == 0
            )
            path = Path(tmp) / "big.json"
            timed(f"write findings file ({len(big.findings)} findings)", lambda: write_document(path, big))
            loaded = timed("read + validate findings file (what `history record` does)", lambda: read_document(path))
            result = timed(
                f"record the big scan ({len(loaded.findings)} findings, one transaction)",
                lambda: record_scan(store, loaded),
            )
            print(f"  ({len(result.regressions)} regressions found)")

            timed(f"history list ({args.scans + 1} scans with tallies)", lambda: list_scans(store))
            timelines = timed(
                f"control history, one control, all hosts, {args.scans + 1} scans",
                lambda: control_timelines(store, "BENCH-0003"),
            )
            print(f"  ({len(timelines)} resources, {sum(len(t.intervals) for t in timelines)} intervals)")
            timed(
                "control history, one control, one host",
                lambda: control_timelines(store, "BENCH-0003", host_pattern="host-001"),
            )
            summary = timed(
                "period summary over the whole history",
                lambda: build_period_summary(store, START.date(), (START + timedelta(days=365)).date()),
            )
            counts = (summary.scans, len(summary.requirements), len(summary.regressions))
            print("  ({} scans, {} requirements, {} regressions)".format(*counts))
            timed("metrics of the latest scan", lambda: render_metrics(store))
            exported = timed("export the whole store", lambda: export_history(store, Path(tmp) / "export.json"))
            size = (Path(tmp) / "export.json").stat().st_size / 1e6
            print(f"  ({exported.scans} scans, {exported.findings} findings, {size:.0f} MB)")


if __name__ == "__main__":
    main()
