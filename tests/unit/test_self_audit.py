"""preaudit on itself: its own code has no high-severity bandit finding and its pinned
requirements no known advisory in the offline PyPA snapshot kept in tests/data/vulndb."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.code import scan_code
from scanners.dependencies import scan_dependencies
from scanners.findings import Finding, Severity, Status
from scanners.scanning import ScanContext, ScanRoot
from scanners.vulndb import import_snapshot

ROOT = Path(__file__).resolve().parents[2]
OWN_CODE = ("scanners", "library", "module_utils", "filter_plugins", "bench", "scripts")
# The lab's application is the deliberately weak platform the scans must find things in.
NOT_OURS = ROOT / "scanners" / "lab" / "image" / "files"
SNAPSHOT = ROOT / "tests" / "data" / "vulndb" / "pypa-advisory-database-3ccb612.tar.gz"


def _blocking(findings: list[Finding]) -> list[str]:
    return [
        f"{f.rule} {f.resource.label()} {f.title}"
        for f in findings
        if f.status in (Status.FAIL, Status.ERROR) and f.severity.rank >= Severity.HIGH.rank
    ]


def test_own_code_has_no_high_severity_bandit_finding(tmp_path: Path) -> None:
    found: list[Finding] = []
    stats = scan_code(
        ScanContext(default_catalog(), emit=found.append),
        [ScanRoot(ROOT / p, display=p) for p in OWN_CODE],
        cache_dir=tmp_path / "cache",
    )
    assert stats.analysed > 50
    ours = [f for f in found if not str(ROOT / (f.resource.path or "")).startswith(str(NOT_OURS))]
    assert ours, "the scan saw none of preaudit's code"
    assert _blocking(ours) == []


def test_own_requirements_have_no_known_advisory(tmp_path: Path) -> None:
    import_snapshot(SNAPSHOT, tmp_path / "vulndb")
    found: list[Finding] = []
    stats = scan_dependencies(
        ScanContext(default_catalog(), emit=found.append),
        [ScanRoot(ROOT / "requirements.txt"), ScanRoot(ROOT / "requirements-dev.txt")],
        vulndb=tmp_path / "vulndb",
    )
    assert stats.packages >= 40, "the audit did not read the pinned requirements"
    assert stats.vulndb and stats.vulndb["commit"] == "3ccb612"
    problems = [f"{f.rule} {f.resource.label()} {f.message}" for f in found if f.status in (Status.FAIL, Status.ERROR)]
    assert problems == []


@pytest.mark.parametrize("path", ["tests/data/vulndb/pypa-advisory-database-3ccb612.tar.gz"])
def test_the_snapshot_is_attributed(path: str) -> None:
    readme = (ROOT / "tests" / "data" / "README.md").read_text()
    assert Path(path).name in readme and "CC-BY 4.0" in readme
