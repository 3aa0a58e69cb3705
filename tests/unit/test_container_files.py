"""scan_container_files: discovery, one finding per control per resource, errors per file, bad roots refused."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from scanners.catalog import CHECK_TYPES, default_catalog
from scanners.containers import scan_container_files
from scanners.errors import InputError
from scanners.findings import Finding, ResourceKind, Status
from scanners.findings_file import new_document, validate_document
from scanners.scanning import ScanContext, ScanRoot

ROOT = Path(__file__).resolve().parents[2]
LAB_FILES = ROOT / "scanners" / "lab" / "image" / "files"
DATA = ROOT / "tests" / "data" / "containers"


def _scan(*roots: ScanRoot, cancelled: threading.Event | None = None) -> list[Finding]:
    findings: list[Finding] = []
    ctx = ScanContext(default_catalog(), findings.append, cancelled=cancelled or threading.Event())
    scan_container_files(ctx, list(roots))
    return findings


def test_lab_image_yields_exactly_the_seeded_weaknesses_and_more() -> None:
    findings = _scan(ScanRoot(LAB_FILES, host="sim-1", display="/"))
    failing = {(f.resource.path, f.discriminator, f.control_id) for f in findings if f.status is Status.FAIL}
    dockerfile = {("/opt/montecarlo/Dockerfile", "", f"CTR-F-00{i}") for i in range(1, 7)}
    daemon = {("/etc/docker/daemon.json", "", f"CTR-D-{i:03d}") for i in (1, 3, 4, 5, 6, 7, 8, 9, 12)}
    compose = {
        ("/opt/montecarlo/docker-compose.yml", service, f"CTR-C-{i:03d}")
        for service, ids in (("simulation", (1, 2, 3, 5, 6, 7, 8, 9, 10, 11)), ("worker", (4, 5, 6, 7, 8, 9, 10, 11)))
        for i in ids
    }
    assert failing == dockerfile | daemon | compose
    # PASS findings too, one per control per resource checked (readiness needs them).
    assert len(findings) == 6 + 9 + 2 * 12
    assert all(f.resource.kind is ResourceKind.FILE and f.resource.host == "sim-1" for f in findings)


def test_findings_form_a_valid_findings_document() -> None:
    document = new_document(default_catalog())
    document.findings = _scan(ScanRoot(LAB_FILES, host="sim-1", display="/"))
    validate_document(document.to_dict())


def test_every_container_control_of_the_catalog_is_evaluated_by_the_scanner() -> None:
    # The static and runtime checks together cover exactly the catalog's scanner-evaluated controls.
    from scanners.containers.daemon import check_engine_info
    from scanners.containers.runtime_rules import EngineFacts, check_container

    emitted = {f.control_id for f in _scan(ScanRoot(LAB_FILES))}
    emitted |= {v.control_id for v in check_engine_info({}, {})}
    emitted |= {v.control_id for v in check_container({}, EngineFacts(seccomp=True, seccomp_profile="default"))}
    catalog = {c.id for c in default_catalog() if CHECK_TYPES[c.check_type].evaluator == "containers"}
    assert emitted == catalog
    rules = [(c.check_type, c.check["rule"]) for c in default_catalog() if c.id in catalog]
    assert len(rules) == len(set(rules)), "each rule name is used once per check type"


def test_discovery_names_skips_and_file_roots(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    text = "FROM alpine:3.20\nUSER 1000\nHEALTHCHECK CMD true\n"
    for name in ("Dockerfile", "Dockerfile.dev", "api.Dockerfile", "Dockerfile.dockerignore", "dockerfile.txt"):
        (tmp_path / "svc" / name).write_text(text)
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "pkg" / "Dockerfile").write_text(text)
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "daemon.json").write_text('{"not": "docker"}')
    (tmp_path / "etc" / "docker").mkdir(parents=True)
    (tmp_path / "etc" / "docker" / "daemon.json").write_text("{}")
    paths = {f.resource.path for f in _scan(ScanRoot(tmp_path, display="/r"))}
    assert paths == {"/r/svc/Dockerfile", "/r/svc/Dockerfile.dev", "/r/svc/api.Dockerfile", "/r/etc/docker/daemon.json"}
    # A single file given as a root is scanned for what its name says, wherever it lives.
    single = _scan(ScanRoot(tmp_path / "tool" / "daemon.json", host="h", display="/etc/docker/daemon.json"))
    assert {f.resource.path for f in single} == {"/etc/docker/daemon.json"} and len(single) == 9


def test_override_file_given_as_root_is_merged_with_its_base(tmp_path: Path) -> None:
    shutil.copy(LAB_FILES / "opt" / "montecarlo" / "docker-compose.yml", tmp_path / "docker-compose.yml")
    override = DATA / "compose" / "hardening-override" / "docker-compose.override.yml"
    shutil.copy(override, tmp_path)
    shown = "/opt/montecarlo/docker-compose.override.yml"
    findings = _scan(ScanRoot(tmp_path / "docker-compose.override.yml", host="sim-1", display=shown))
    assert [f for f in findings if f.status is Status.FAIL] == []
    assert {f.resource.path for f in findings} == {"/opt/montecarlo/docker-compose.yml"}
    assert findings[0].evidence.details["files"] == ["/opt/montecarlo/docker-compose.yml", shown]
    # The base file as the root brings its override along, as `docker compose` does without -f.
    base = _scan(ScanRoot(tmp_path / "docker-compose.yml"))
    assert [f for f in base if f.status is Status.FAIL] == []


def test_a_broken_file_is_one_error_finding_and_the_others_are_still_scanned(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "compose.yaml").write_text("services:\n  web:\n    image: [unclosed\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "Dockerfile").write_bytes(b"FROM alpine:3.20\nENV X=\xff\n")
    (tmp_path / "c" / "docker").mkdir(parents=True)
    (tmp_path / "c" / "docker" / "daemon.json").write_text('{"icc": false,')
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "Dockerfile").write_text("FROM alpine:3.20\n")
    findings = _scan(ScanRoot(tmp_path, host="sim-2", display="/srv"))
    errors = {f.resource.path: f.message for f in findings if f.status is Status.ERROR}
    assert errors == {
        "/srv/a/compose.yaml": "/srv/a/compose.yaml: invalid YAML at line 4",
        "/srv/b/Dockerfile": "/srv/b/Dockerfile: not UTF-8 text",
        "/srv/c/docker/daemon.json": "/srv/c/docker/daemon.json: not JSON (line 1, column 15: Expecting property name "
        "enclosed in double quotes)",
    }
    assert all(f.control_id == "SCAN-001" for f in findings if f.status is Status.ERROR)
    assert str(tmp_path) not in " ".join(errors.values()), "errors name the displayed path, not the local copy"
    assert {f.control_id for f in findings if f.resource.path == "/srv/d/Dockerfile"} == {
        f"CTR-F-00{i}" for i in range(1, 7)
    }


def test_a_missing_root_is_refused_before_anything_is_scanned(tmp_path: Path) -> None:
    findings: list[Finding] = []
    ctx = ScanContext(default_catalog(), findings.append)
    with pytest.raises(InputError, match=r"container scan: no such file or directory: .*nowhere"):
        scan_container_files(ctx, [ScanRoot(LAB_FILES), ScanRoot(tmp_path / "nowhere")])
    assert findings == []


def test_cancelled_scan_stops_between_files() -> None:
    cancelled = threading.Event()
    cancelled.set()
    assert _scan(ScanRoot(LAB_FILES), cancelled=cancelled) == []
