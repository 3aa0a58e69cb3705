"""Compose: the effective configuration follows Compose's merge rules, and each service fails exactly what it should."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from scanners.catalog import default_catalog
from scanners.containers import effective_compose, scan_container_files
from scanners.containers.compose import check_service
from scanners.errors import InputError
from scanners.findings import Finding, ResourceKind, Status
from scanners.scanning import ScanContext, ScanRoot

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "containers" / "compose"
LAB_COMPOSE = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo" / "docker-compose.yml"
ALL_C = {f"CTR-C-{i:03d}" for i in range(1, 13)}
# W-017, W-018, W-019 of scanners/lab/weaknesses.yml plus what else the lab's file gets wrong.
LAB_FAILING = {
    "simulation": ALL_C - {"CTR-C-004", "CTR-C-012"},
    "worker": ALL_C - {"CTR-C-001", "CTR-C-002", "CTR-C-003", "CTR-C-012"},
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _scan(*roots: ScanRoot) -> list[Finding]:
    findings: list[Finding] = []
    scan_container_files(ScanContext(default_catalog(), findings.append), list(roots))
    return findings


def _failing_by_service(findings: list[Finding]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for finding in findings:
        if finding.control_id.startswith("CTR-C-"):
            service = finding.evidence.details["service"]
            result.setdefault(service, set())
            if finding.status is Status.FAIL:
                result[service].add(finding.control_id)
    return result


# --- the effective configuration ---------------------------------------------------------


def test_mappings_merge_and_scalars_are_replaced(tmp_path: Path) -> None:
    base = _write(tmp_path / "a.yml", "services:\n  web:\n    image: app:1\n    privileged: true\n    user: root\n")
    over = _write(tmp_path / "b.yml", "services:\n  web:\n    privileged: false\n  cache:\n    image: redis:7\n")
    model = effective_compose([base, over])
    assert model["services"] == {
        "web": {"image": "app:1", "privileged": False, "user": "root"},
        "cache": {"image": "redis:7"},
    }


def test_sequences_append_and_deduplicate_by_their_unique_key(tmp_path: Path) -> None:
    base = _write(
        tmp_path / "a.yml",
        """
services:
  web:
    volumes: ["./data:/data", "/var/run/docker.sock:/var/run/docker.sock"]
    ports: ["8000:8000"]
    cap_add: [NET_ADMIN]
    dns: [1.1.1.1]
    environment: [A=1, B=2]
    command: [serve, --debug]
    healthcheck: {test: [CMD, curl, -f, http://localhost], interval: 10s}
""",
    )
    over = _write(
        tmp_path / "b.yml",
        """
services:
  web:
    volumes: ["./other:/data:ro"]
    ports: ["8000:8000", "127.0.0.1:9000:9000"]
    cap_add: [CAP_NET_ADMIN, SYS_TIME]
    dns: [1.1.1.1, 8.8.8.8]
    environment: {B: "3", C: "4"}
    command: [serve]
    healthcheck: {test: [CMD, "true"]}
""",
    )
    web = effective_compose([base, over])["services"]["web"]
    # A volume with the same target replaces the earlier one in place.
    assert web["volumes"] == ["./other:/data:ro", "/var/run/docker.sock:/var/run/docker.sock"]
    assert web["ports"] == ["8000:8000", "127.0.0.1:9000:9000"]
    assert web["cap_add"] == ["CAP_NET_ADMIN", "SYS_TIME"]
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["command"] == ["serve"]
    assert web["healthcheck"] == {"test": ["CMD", "true"], "interval": "10s"}


def test_reset_removes_and_override_replaces(tmp_path: Path) -> None:
    base = _write(
        tmp_path / "a.yml",
        """
services:
  web:
    network_mode: host
    pid: host
    cap_add: [SYS_ADMIN]
    volumes: ["/var/run/docker.sock:/var/run/docker.sock", "./data:/data"]
    security_opt: ["label:disable"]
    logging: {driver: json-file, options: {max-size: 1m}}
""",
    )
    over = _write(
        tmp_path / "b.yml",
        """
services:
  web:
    network_mode: !reset null
    pid: !reset
    cap_add: !reset []
    volumes: !override ["./data:/data"]
    security_opt: !override [no-new-privileges:true]
    logging: {driver: syslog, options: {tag: web}}
""",
    )
    web = effective_compose([base, over])["services"]["web"]
    assert web == {
        "volumes": ["./data:/data"],
        "security_opt": ["no-new-privileges:true"],
        # A different driver replaces the logging block instead of merging its options.
        "logging": {"driver": "syslog", "options": {"tag": "web"}},
    }


def test_override_keeps_the_scalar_type(tmp_path: Path) -> None:
    base = _write(tmp_path / "a.yml", "services:\n  web:\n    pids_limit: 10\n    read_only: false\n")
    over = _write(
        tmp_path / "b.yml", "services:\n  web:\n    pids_limit: !override 64\n    read_only: !override true\n"
    )
    assert effective_compose([base, over])["services"]["web"] == {"pids_limit": 64, "read_only": True}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [web]\n", "'services' must be a mapping"),
        ("services:\n  web: [1]\n", "service 'web' must be a mapping"),
        ("- just\n- a list\n", "must be a mapping, not list"),
        ("services:\n  web:\n    image: [unclosed\n", "invalid YAML at line"),
    ],
)
def test_malformed_files_are_one_line_input_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        effective_compose([_write(tmp_path / "compose.yaml", text)])


def test_files_that_cannot_merge_name_the_file_and_attribute(tmp_path: Path) -> None:
    base = _write(tmp_path / "a.yml", "services:\n  web:\n    tmpfs: [/tmp]\n")
    over = _write(tmp_path / "b.yml", "services:\n  web:\n    tmpfs: {size: 1}\n")
    with pytest.raises(InputError, match=r"b.yml: cannot merge services.web.tmpfs: sequence in one file, mapping"):
        effective_compose([base, over])


# --- the checks --------------------------------------------------------------------------


def test_variants_fail_exactly_their_weaknesses() -> None:
    failing = _failing_by_service(_scan(ScanRoot(DATA / "variants")))
    assert failing == {
        "hardened": set(),
        "host-mounts": {
            "CTR-C-002",  # docker.sock in long syntax
            "CTR-C-004",  # ipc: host
            "CTR-C-005",  # CAP_SYS_ADMIN
            "CTR-C-007",  # no-new-privileges:false
            "CTR-C-008",  # user: root
            "CTR-C-010",  # healthcheck disabled
            "CTR-C-011",  # restart: always
            "CTR-C-012",  # / (even read-only) and /etc/montecarlo writable
        },
        "unlimited-retries": ALL_C - {"CTR-C-001", "CTR-C-002", "CTR-C-003", "CTR-C-004", "CTR-C-012"},
    }


def test_lab_compose_fails_its_seeded_weaknesses(tmp_path: Path) -> None:
    project = tmp_path / "montecarlo"
    project.mkdir()
    shutil.copy(LAB_COMPOSE, project / "docker-compose.yml")
    findings = _scan(ScanRoot(project, host="sim-1", display="/opt/montecarlo"))
    assert _failing_by_service(findings) == LAB_FAILING
    privileged = next(f for f in findings if f.control_id == "CTR-C-001" and f.status is Status.FAIL)
    assert privileged.resource.kind is ResourceKind.FILE
    assert privileged.resource.path == "/opt/montecarlo/docker-compose.yml"
    assert privileged.resource.line == 2
    assert privileged.discriminator == "simulation"
    assert privileged.evidence.observed == {"privileged": True}


def test_hardening_override_fixes_every_compose_weakness_of_the_lab(tmp_path: Path) -> None:
    project = tmp_path / "montecarlo"
    project.mkdir()
    shutil.copy(LAB_COMPOSE, project / "docker-compose.yml")
    before = _scan(ScanRoot(project, host="sim-1", display="/opt/montecarlo"))
    shutil.copy(DATA / "hardening-override" / "docker-compose.override.yml", project)
    after = _scan(ScanRoot(project, host="sim-1", display="/opt/montecarlo"))
    assert _failing_by_service(after) == {"simulation": set(), "worker": set()}
    # Same resource and service: the findings keep their fingerprints and flip from fail to pass.
    assert {f.fingerprint for f in before} == {f.fingerprint for f in after}
    assert all(f.evidence.details["files"][-1].endswith("docker-compose.override.yml") for f in after)
    simulation = effective_compose([project / "docker-compose.yml", project / "docker-compose.override.yml"])
    assert "network_mode" not in simulation["services"]["simulation"]
    assert simulation["services"]["simulation"]["volumes"] == ["./results:/opt/montecarlo/results"]
    assert "pid" not in simulation["services"]["worker"]
    assert "cap_add" not in simulation["services"]["worker"]


@pytest.mark.parametrize(
    ("service", "failing"),
    [
        ({"restart": "on-failure:3"}, False),
        ({"restart": "on-failure:6"}, True),
        ({"restart": "unless-stopped"}, True),
        ({"restart": "no"}, True),
        ({"deploy": {"restart_policy": {"condition": "on-failure", "max_attempts": 3}}}, False),
        ({"deploy": {"restart_policy": {"condition": "any"}}}, True),
    ],
)
def test_restart_policy_rule(service: dict[str, Any], failing: bool) -> None:
    verdict = next(v for v in check_service(service) if v.control_id == "CTR-C-011")
    assert verdict.failed is failing


@pytest.mark.parametrize(
    ("volume", "failing"),
    [
        ("/etc/localtime:/etc/localtime:ro", False),
        ("/etc/ssl/certs:/etc/ssl/certs:ro", False),
        ("/etc/ssl/certs:/etc/ssl/certs", True),
        ("/proc:/host/proc:ro", True),
        ("/var/lib/docker:/docker", True),
        ("/srv/data:/data", False),
        ("named-volume:/var/lib/app", False),
    ],
)
def test_sensitive_host_path_rule(volume: str, failing: bool) -> None:
    verdict = next(v for v in check_service({"volumes": [volume]}) if v.control_id == "CTR-C-012")
    assert verdict.failed is failing


def test_healthcheck_commands_stay_out_of_findings(tmp_path: Path) -> None:
    _write(
        tmp_path / "compose.yaml",
        "services:\n  web:\n    healthcheck:\n      test: [CMD, curl, -u, 'admin:s3cret-probe', http://localhost]\n",
    )
    findings = _scan(ScanRoot(tmp_path))
    assert "s3cret-probe" not in str([f.to_dict() for f in findings])
    check = next(f for f in findings if f.control_id == "CTR-C-010")
    assert (check.status, check.evidence.observed) == (Status.PASS, {"healthcheck": "test defined"})
