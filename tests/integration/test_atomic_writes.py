"""Report and bundle writes are atomic: a full disk or a killed process never leaves a half-written
file, and the previous file survives. Uses a real small tmpfs (needs root) and real SIGKILLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.findings import Evidence, Resource, ResourceKind, Status
from scanners.findings_file import new_document, write_document

PREAUDIT = str(Path(sys.executable).parent / "preaudit")


def _findings_document(path: Path, count: int) -> Path:
    catalog = default_catalog()
    controls = [c for c in catalog if c.evaluator == "host"]
    document = new_document(catalog, hosts=[f"sim-{i}" for i in range(count // len(controls) + 1)])
    document.findings = [
        controls[i % len(controls)].finding(
            Status.FAIL if i % 3 else Status.PASS,
            Resource(ResourceKind.HOST, host=f"sim-{i // len(controls)}"),
            "host",
            evidence=Evidence(observed=f"value {i}", expected="hardened"),
        )
        for i in range(count)
    ]
    write_document(path, document)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def test_a_full_disk_is_a_one_line_error_and_keeps_the_previous_report(tmp_path: Path, small_disk: Path) -> None:
    small = _findings_document(tmp_path / "small.json", 20)
    large = _findings_document(tmp_path / "large.json", 6000)
    out = small_disk / "report"
    first = subprocess.run(
        [PREAUDIT, "report", str(small), "--format", "json", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    before = (out / "findings.json").read_bytes()

    full = subprocess.run(
        [PREAUDIT, "report", str(large), "--format", "json", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert full.returncode == 3
    assert full.stderr.strip().splitlines() == [full.stderr.strip()], full.stderr
    assert "No space left on device" in full.stderr and str(out) in full.stderr
    assert "Traceback" not in full.stderr
    assert (out / "findings.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(["findings.json", "report.json"])


def test_a_killed_report_never_leaves_a_torn_file(tmp_path: Path) -> None:
    findings = _findings_document(tmp_path / "findings.json", 4000)
    out = tmp_path / "out"
    first = subprocess.run(
        [PREAUDIT, "report", str(findings), "--format", "json,html", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5, 2.0):
        proc = subprocess.Popen(
            [PREAUDIT, "report", str(findings), "--format", "json,html", "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        json.loads((out / "findings.json").read_text())  # complete, old or new
        assert (out / "report.html").read_text().rstrip().endswith("</html>")
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    # A killed writer may leave its own temporary file; it never replaces a real export.
    assert all(name.endswith(".tmp") for name in leftovers), leftovers
