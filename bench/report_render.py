"""How long rendering a large scan takes: N findings (default 20,000) into every export format
and a signed bundle. Prints seconds and findings per second for each step.

    .venv/bin/python bench/report_render.py [--findings 20000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scanners.catalog import default_catalog
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Status
from scanners.findings_file import FindingsDocument, new_document, read_document, validate_document, write_document
from scanners.report import build_report, verify_bundle, write_bundle
from scanners.report.exports import FORMATS
from scanners.report.validation import check_findings_export
from scanners.waivers import parse_waivers

T = TypeVar("T")
STARTED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def fleet(count: int, seed: int) -> FindingsDocument:
    """``count`` findings: every host-checked control on as many hosts as it takes."""
    catalog = default_catalog()
    controls = [c for c in catalog if c.evaluator == "host"]
    rng = random.Random(seed)
    findings: list[Finding] = []
    hosts: list[str] = []
    while len(findings) < count:
        name = f"sim-{len(hosts) + 1}"
        hosts.append(name)
        for control in controls:
            if len(findings) == count:
                break
            failing = rng.random() < 0.4
            findings.append(
                control.finding(
                    Status.FAIL if failing else Status.PASS,
                    Resource(ResourceKind.HOST, host=name),
                    "host",
                    evidence=Evidence(
                        observed="yes" if failing else "no", expected="no", details={"source": "sshd -T"}
                    ),
                )
            )
    doc = new_document(catalog, started_at=STARTED, finished_at=STARTED + timedelta(minutes=20), hosts=hosts)
    doc.findings = findings
    return doc


def timed(label: str, count: int, action: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"{label:<28} {seconds:8.2f} s  {count / seconds:10.0f} findings/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="write the outputs here instead of a temporary directory")
    args = parser.parse_args()
    n = args.findings
    out = args.keep or Path(tempfile.mkdtemp(prefix="preaudit-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    current, baseline = fleet(n, seed=1), fleet(n, seed=2)
    write_document(out / "findings.json", current)
    write_document(out / "baseline.json", baseline)
    waivers = parse_waivers(
        {"waivers": [{"control": "SSH-010", "resources": ["sim-1*"], "justification": "bench",
                      "approver": "bench@example.com", "expires": "2027-01-31"}]},
        "bench",
    )  # fmt: skip
    print(f"{n} findings, {len(current.scan.hosts)} hosts; outputs in {out}")
    document = timed("read findings document", n, lambda: read_document(out / "findings.json"))
    report = timed(
        "build report (+diff)",
        n,
        lambda: build_report(document, waivers=waivers, baseline=baseline, today=date(2026, 11, 20)),
    )
    total = 0.0
    written: list[Path] = []
    for fmt, files in FORMATS.items():
        for filename, render in files:
            start = time.perf_counter()
            text = render(report)
            total += time.perf_counter() - start
            (out / filename).write_text(text, encoding="utf-8")
            written.append(out / filename)
            seconds = time.perf_counter() - start
            size = (out / filename).stat().st_size / 1e6
            print(f"  {fmt:<6} {filename:<20} {seconds:8.2f} s  {n / seconds:10.0f} findings/s  {size:7.1f} MB")
    print(f"{'all formats':<28} {total:8.2f} s  {n / total:10.0f} findings/s")
    key = Ed25519PrivateKey.generate()
    timed(
        "write signed bundle",
        n,
        lambda: write_bundle(
            out / "evidence.tar.gz",
            report=report,
            exports=written,
            signing_key=key,
            inputs={"findings.json": out / "findings.json"},
        ),
    )
    result = timed("verify bundle", n, lambda: verify_bundle(out / "evidence.tar.gz", key.public_key()))
    assert result.ok, result.problems

    # The claim in scanners/report/validation.py: the compiled schema check against jsonschema.
    data = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    start = time.perf_counter()
    validate_document(data)
    reference = time.perf_counter() - start
    start = time.perf_counter()
    check_findings_export(data)
    compiled = time.perf_counter() - start
    print(f"schema check of findings.json: jsonschema {reference:.2f} s, compiled {compiled:.2f} s, "
          f"{reference / compiled:.0f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
