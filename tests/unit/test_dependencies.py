"""The dependency scanner: pip-audit offline against the imported OSV snapshot, exact advisories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.dependencies import DependencyScanStats, scan_dependencies
from scanners.findings import Finding, ResourceKind, Status
from scanners.findings_file import new_document, validate_document
from scanners.scanning import ScanContext, ScanRoot
from scanners.vulndb import import_snapshot

ROOT = Path(__file__).resolve().parents[2]
ADVISORIES = ROOT / "tests" / "data" / "advisories"
LAB_REQUIREMENTS = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo" / "requirements.txt"

# Every advisory of the snapshot (PyPA advisory database at 3ccb612) that affects the lab's pins.
LAB_ADVISORIES = {
    "requests": {"PYSEC-2018-28", "PYSEC-2023-74"},
    "urllib3": {
        "PYSEC-2019-132",
        "PYSEC-2019-133",
        "PYSEC-2020-148",
        "PYSEC-2021-108",
        "PYSEC-2023-192",
        "PYSEC-2023-207",
        "PYSEC-2023-212",
    },
    "PyYAML": {"PYSEC-2020-96", "PYSEC-2021-142"},
    "Jinja2": {"PYSEC-2019-217", "PYSEC-2021-66"},
    "Flask": {"PYSEC-2018-66", "PYSEC-2019-179", "PYSEC-2023-62"},
    "cryptography": {"PYSEC-2021-62", "PYSEC-2021-63", "PYSEC-2023-11", "PYSEC-2023-254"},
}


@pytest.fixture(scope="module")
def vulndb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    location = tmp_path_factory.mktemp("vulndb")
    import_snapshot(ADVISORIES, location)
    return location


def run(roots: list[ScanRoot], db: Path | None) -> tuple[list[Finding], DependencyScanStats]:
    found: list[Finding] = []
    stats = scan_dependencies(ScanContext(default_catalog(), found.append), roots, vulndb=db)
    return found, stats


def test_lab_requirements_have_exactly_the_snapshot_advisories(vulndb: Path) -> None:
    root = ScanRoot(LAB_REQUIREMENTS, host="sim-1", display="/opt/montecarlo/requirements.txt")
    findings, stats = run([root], vulndb)
    failing: dict[str, set[str]] = {}
    for f in findings:
        assert f.status is Status.FAIL and f.control_id == "DEP-001", f.message
        assert f.resource.kind is ResourceKind.PACKAGE and f.resource.host == "sim-1"
        assert f.resource.path == "/opt/montecarlo/requirements.txt"
        failing.setdefault(f.resource.package or "", set()).add(f.rule or "")
    assert failing == LAB_ADVISORIES
    # numpy 1.22.0 is pinned too, but no advisory of this snapshot affects it.
    assert "numpy" not in failing
    assert stats.packages == 7 and stats.vulnerable_packages == 6 and stats.findings == 20
    assert stats.vulndb is not None
    assert (stats.vulndb["kind"], stats.vulndb["advisories"]) == ("pypa-advisory-database", 43)


def test_a_finding_names_cves_fixed_versions_line_and_snapshot(vulndb: Path) -> None:
    findings, _ = run([ScanRoot(LAB_REQUIREMENTS, display="requirements.txt")], vulndb)
    by_rule = {f.rule: f for f in findings}
    pyyaml = by_rule["PYSEC-2021-142"]
    assert (pyyaml.resource.package, pyyaml.resource.version, pyyaml.resource.line) == ("PyYAML", "5.3", 4)
    assert pyyaml.references["cve"] == ["CVE-2020-14343"]
    assert pyyaml.remediation.startswith("Upgrade PyYAML from 5.3 to 5.4 or later")
    assert pyyaml.evidence.details["fixed_versions"] == ["5.4"]
    assert "pypa-advisory-database" in pyyaml.evidence.details["vulndb"]
    cookie = by_rule["PYSEC-2023-192"]
    assert cookie.remediation.startswith("Upgrade urllib3 from 1.24.1 to 1.26.17 or later (fixed in 1.26.17, 2.0.6)")
    assert cookie.discriminator == "PYSEC-2023-192"


def test_without_a_database_the_scanner_says_so_loudly(tmp_path: Path) -> None:
    findings, stats = run([ScanRoot(LAB_REQUIREMENTS)], tmp_path / "no-db")
    assert len(findings) == 1
    (only,) = findings
    assert only.status is Status.ERROR and only.control_id == "DEP-001"
    assert "no vulnerability database" in only.message and "1 declaration files found" in only.message
    assert stats.vulndb is None and stats.packages == 0


def test_a_corrupt_database_is_an_error_finding(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "osv.sqlite3").write_bytes(b"not sqlite" * 500)
    findings, stats = run([ScanRoot(LAB_REQUIREMENTS)], tmp_path / "db")
    assert [(f.status, f.control_id) for f in findings] == [(Status.ERROR, "DEP-001")]
    assert "is corrupt" in findings[0].message and stats.vulndb is None


def test_problem_lines_are_errors_and_the_rest_is_still_audited(tmp_path: Path, vulndb: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text(
        "requests==2.19.1\n"
        "flask>=1.0\n"
        "this is not === a requirement\n"
        "numpy==1.22.0 ; python_version < '3'\n"
        "-r requirements-extra.txt\n"
        "git+https://example.invalid/pkg.git#egg=pkg\n"
        "-r requirements-dir.txt\n"
        "PyYAML==5.3\n"
    )
    (project / "requirements-extra.txt").write_text("# nested\njinja2==2.10\n")
    (project / "requirements-dir.txt").mkdir()
    findings, stats = run([ScanRoot(project, display="p")], vulndb)
    errors = {(f.resource.path, f.resource.line): f.message for f in findings if f.status is Status.ERROR}
    assert set(errors) == {
        ("p/requirements.txt", 2),
        ("p/requirements.txt", 3),
        ("p/requirements.txt", 6),
        ("p/requirements.txt", 7),
    }
    assert "flask>=1.0 is not pinned to one version (==)" in errors[("p/requirements.txt", 2)]
    assert "invalid requirement line" in errors[("p/requirements.txt", 3)]
    assert "URL or editable requirement" in errors[("p/requirements.txt", 6)]
    assert "is a directory where a file was expected" in errors[("p/requirements.txt", 7)]
    audited = {(f.resource.package, f.resource.path, f.resource.line) for f in findings if f.status is Status.FAIL}
    assert audited == {
        ("requests", "p/requirements.txt", 1),
        ("jinja2", "p/requirements-extra.txt", 2),
        ("PyYAML", "p/requirements.txt", 8),
    }
    # requirements-extra.txt is also found on its own in the directory: read twice, reported once.
    assert stats.files == 2 and stats.not_audited == 4
    assert len({f.fingerprint for f in findings}) == len(findings)


def test_a_clean_file_gets_a_pass_finding_naming_the_snapshot(tmp_path: Path, vulndb: Path) -> None:
    clean = tmp_path / "requirements.txt"
    clean.write_text("requests==2.32.3\nurllib3==2.2.3\n")
    findings, stats = run([ScanRoot(clean, display="requirements.txt")], vulndb)
    assert [(f.status, f.control_id) for f in findings] == [(Status.PASS, "DEP-001")]
    assert "2 pinned packages audited against pypa-advisory-database" in findings[0].message
    assert stats.packages == 2 and stats.findings == 0


def test_pyproject_pins_are_audited_and_ranges_reported(tmp_path: Path, vulndb: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1"\ndependencies = [\n  "Flask==0.12.2",\n  "requests>=2",\n]\n'
        '[project.optional-dependencies]\ndev = ["PyYAML==5.3"]\n'
    )
    findings, _ = run([ScanRoot(tmp_path, display="d")], vulndb)
    assert {(f.resource.package, f.rule) for f in findings if f.status is Status.FAIL} == {
        ("Flask", "PYSEC-2018-66"),
        ("Flask", "PYSEC-2019-179"),
        ("Flask", "PYSEC-2023-62"),
        ("PyYAML", "PYSEC-2020-96"),
        ("PyYAML", "PYSEC-2021-142"),
    }
    (unpinned,) = [f for f in findings if f.status is Status.ERROR]
    assert (unpinned.resource.path, unpinned.resource.line) == ("d/pyproject.toml", 6)
    assert "requests>=2 is not pinned" in unpinned.message


def test_a_virtualenv_is_audited_through_pip(tmp_path: Path, vulndb: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    # An installed distribution, as pip leaves it: a dist-info directory with its metadata.
    dist = site / "urllib3-1.24.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: urllib3\nVersion: 1.24.1\n")
    (dist / "INSTALLER").write_text("pip\n")
    findings, stats = run([ScanRoot(tmp_path, display="srv")], vulndb)
    assert {(f.resource.package, f.resource.path) for f in findings if f.status is Status.FAIL} == {
        ("urllib3", "srv/venv")
    }
    assert {f.rule for f in findings} == LAB_ADVISORIES["urllib3"]
    assert stats.packages == 1


def test_fingerprints_survive_moved_lines_and_findings_fit_the_schema(tmp_path: Path, vulndb: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    shutil.copy(LAB_REQUIREMENTS, requirements)
    before, _ = run([ScanRoot(requirements, display="r.txt")], vulndb)
    requirements.write_text("# moved\n\n" + requirements.read_text())
    after, _ = run([ScanRoot(requirements, display="r.txt")], vulndb)
    assert {f.fingerprint for f in after} == {f.fingerprint for f in before}
    document = new_document(default_catalog(), scanners=["dependencies"])
    document.findings.extend(after)
    data = document.to_dict()
    validate_document(data)
    assert json.dumps(data)
