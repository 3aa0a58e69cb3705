"""Benchmark: preaudit's code, secrets and dependency scanners against the tools run one by one.

On a copy of a large real code tree (by default the installed ``ansible`` package, 100k+ lines
of Python) plus the project's pinned requirements, time

  (a) the ``bandit -r``, ``detect-secrets scan`` and ``pip-audit`` CLIs one after another,
  (b) preaudit's three scanners with empty caches (cold),
  (c) the same again with the caches from (b) (warm),

and print seconds and the ratios b/a and c/a. Targets: cold <= 0.55x, warm <= 0.05x.

pip-audit cannot reach its vulnerability services offline: it then fails fast and reports
every package as "could not be audited"; its time is still part of (a), and the output says so.
The dependency scanner audits offline against a database imported from ``--advisories``
(default: the test fixture advisories) before any timing starts.

Run: ``.venv/bin/python bench/code_scan.py [--tree DIR] [--advisories DIR|FILE]``
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanners.catalog import default_catalog
from scanners.code import scan_code
from scanners.dependencies import scan_dependencies
from scanners.findings import Finding
from scanners.scanning import ScanContext, ScanRoot
from scanners.secrets import scan_secrets
from scanners.vulndb import import_snapshot

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COLD_TARGET = 0.55
WARM_TARGET = 0.05


def default_tree() -> Path:
    spec = importlib.util.find_spec("ansible")
    if spec is None or spec.origin is None:
        raise SystemExit("bench: the ansible package is not installed; pass --tree DIR")
    return Path(spec.origin).parent


def count_lines(tree: Path) -> tuple[int, int]:
    files = list(tree.rglob("*.py"))
    return len(files), sum(p.read_bytes().count(b"\n") for p in files)


def timed(label: str, argv: list[str], cwd: Path) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    note = ""
    if "could not be audited" in result.stdout + result.stderr:
        note = " (offline: every package 'could not be audited')"
    print(f"  {label:<16} {seconds:7.2f} s  exit {result.returncode}{note}")
    return seconds


def run_tools(tree: Path, requirements: Path) -> float:
    print("(a) the tools, one after another")
    total = timed("bandit -r", [str(BIN / "bandit"), "-r", ".", "-q", "-f", "json", "-o", "/dev/null"], tree)
    total += timed("detect-secrets", [str(BIN / "detect-secrets"), "scan", "--all-files", "."], tree)
    total += timed(
        "pip-audit",
        [
            str(BIN / "pip-audit"),
            "-r",
            str(requirements),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--timeout",
            "5",
        ],
        tree,
    )
    print(f"  {'total':<16} {total:7.2f} s")
    return total


def run_preaudit(label: str, tree: Path, requirements: Path, cache: Path, db: Path) -> float:
    """The three scanners at once, as the scan pipeline runs them."""
    lock = threading.Lock()
    findings: list[Finding] = []

    def emit(finding: Finding) -> None:
        with lock:
            findings.append(finding)

    ctx = ScanContext(default_catalog(), emit)
    root = [ScanRoot(tree)]
    jobs: dict[str, Callable[[], Any]] = {
        "code": lambda: scan_code(ctx, root, cache_dir=cache / "code"),
        "secrets": lambda: scan_secrets(ctx, root, cache_dir=cache / "secrets"),
        "dependencies": lambda: scan_dependencies(ctx, [ScanRoot(requirements)], vulndb=db),
    }
    results: dict[str, Any] = {}

    def work(name: str) -> None:
        results[name] = jobs[name]()

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    print(f"({label}) preaudit's scanners in parallel: {seconds:.2f} s, {len(findings)} findings")
    for name, stats in results.items():
        print(f"  {name:<16} {stats.seconds:7.2f} s  {stats}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, help="code tree to copy and scan (default: the installed ansible package)")
    parser.add_argument("--advisories", type=Path, default=REPO / "tests" / "data" / "advisories")
    args = parser.parse_args()
    source = args.tree or default_tree()
    with tempfile.TemporaryDirectory(prefix="preaudit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tree = tmp / "tree"
        # A fresh copy: no cache of any tool has seen these paths.
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns("__pycache__"))
        requirements = tree / "requirements.txt"
        shutil.copy(REPO / "requirements.txt", requirements)
        files, lines = count_lines(tree)
        print(f"tree: {source} -> {files} Python files, {lines} lines")
        db = tmp / "vulndb"
        import_snapshot(args.advisories, db)
        tools = run_tools(tree, requirements)
        cold = run_preaudit("b, cold", tree, requirements, tmp / "cache", db)
        warm = run_preaudit("c, warm", tree, requirements, tmp / "cache", db)
    print(f"cold / tools = {cold / tools:.3f}  (target <= {COLD_TARGET})")
    print(f"warm / tools = {warm / tools:.3f}  (target <= {WARM_TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
