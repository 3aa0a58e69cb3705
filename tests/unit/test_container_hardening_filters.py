"""The container_hardening role's controller-side decisions (filter_plugins/containers.py).

The role merges daemon.json and generates the Compose override with these filters; the tests
prove the results with the container scanner itself, so the role fixes what the scanner reports.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from scanners.catalog import default_catalog
from scanners.containers import effective_compose, scan_container_files
from scanners.containers.compose import check_service
from scanners.containers.daemon import check_daemon_json
from scanners.findings import Finding, Status
from scanners.scanning import ScanContext, ScanRoot
from tests.lab_compose import COMPOSE_CONTROLS, SEEDED_COMPOSE_FAILURES

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from containers import (  # noqa: E402
    compose_override,
    compose_plan,
    docker_daemon,
    dockerd_unit_flags,
    override_path,
)

ROLE = ROOT / "roles" / "container_hardening"
LAB_FILES = ROOT / "scanners" / "lab" / "image" / "files"
LAB_COMPOSE = LAB_FILES / "opt" / "montecarlo" / "docker-compose.yml"
LAB_DAEMON = LAB_FILES / "etc" / "docker" / "daemon.json"
DAEMON_CONTROLS = ["CTR-D-001", *(f"CTR-D-{i:03d}" for i in range(3, 10)), "CTR-D-010", "CTR-D-012"]


def _defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))


def _daemon_settings(defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The role's per-control daemon.json keys (vars/main.yml) with the defaults filled in."""
    return {
        "CTR-D-004": {"icc": False},
        "CTR-D-005": {
            "log-driver": defaults["container_hardening_log_driver"],
            "log-opts": defaults["container_hardening_log_opts"],
        },
        "CTR-D-006": {"live-restore": True},
        "CTR-D-007": {"userland-proxy": False},
        "CTR-D-008": {"no-new-privileges": True},
        "CTR-D-009": {},
        "CTR-D-012": {"default-ulimits": defaults["container_hardening_default_ulimits"]},
    }


def _merge(existing: str, active: list[str] | None = None, **options: Any) -> dict[str, Any]:
    controls = DAEMON_CONTROLS if active is None else active
    return docker_daemon(existing, _daemon_settings(_defaults()), controls, options)


def _failing(config: dict[str, Any]) -> set[str]:
    return {v.control_id for v in check_daemon_json(json.dumps(config), "daemon.json") if v.failed}


def test_role_settings_match_the_vars_file() -> None:
    declared = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_container_hardening_daemon_settings"]
    assert sorted(declared) == sorted(_daemon_settings(_defaults()))


def test_lab_daemon_json_is_hardened_and_keeps_the_operators_other_keys() -> None:
    before = json.loads(LAB_DAEMON.read_text())
    assert _failing(before) >= {"CTR-D-001", "CTR-D-003", "CTR-D-004", "CTR-D-005"}
    merged = _merge(LAB_DAEMON.read_text(), seccomp=True)
    config = merged["config"]
    # userns-remap is off by default: the only daemon.json control left failing.
    assert _failing(config) == {"CTR-D-009"}
    assert config["storage-driver"] == "vfs"
    assert config["hosts"] == ["unix:///var/run/docker.sock"]
    assert "insecure-registries" not in config
    assert merged["refused_hosts"] == ["tcp://0.0.0.0:2375"]
    assert merged["removed_registries"] == ["registry.montecarlo.lab:5000"]
    # A second run merges over its own result and changes nothing.
    assert _merge(json.dumps(config), seccomp=True)["config"] == config


def test_waived_control_keeps_the_hosts_value() -> None:
    config = _merge(LAB_DAEMON.read_text(), active=[c for c in DAEMON_CONTROLS if c != "CTR-D-004"])["config"]
    assert config["icc"] is True
    assert _failing(config) == {"CTR-D-004", "CTR-D-009"}


def test_tcp_listener_is_kept_only_with_tls_client_verification() -> None:
    tls = {"tlsverify": True, "tlscacert": "/etc/docker/ca.pem", "tlscert": "/etc/docker/cert.pem"}
    existing = json.dumps({"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], **tls})
    assert _merge(existing)["refused_hosts"] == ["tcp://0.0.0.0:2376"]  # no tlskey: not verified
    verified = _merge(existing, overwrite={"tlskey": "/etc/docker/key.pem"})
    assert verified["refused_hosts"] == []
    assert verified["config"]["hosts"] == ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"]
    assert "CTR-D-001" not in _failing(verified["config"])


def test_hosts_are_never_added_and_a_tcp_only_list_falls_back_to_the_socket() -> None:
    assert "hosts" not in _merge("{}")["config"]
    assert "hosts" not in _merge("")["config"]
    assert _merge(json.dumps({"hosts": "tcp://127.0.0.1:2375"}))["config"]["hosts"] == ["unix:///var/run/docker.sock"]


def test_unit_command_line_listeners_are_reported() -> None:
    show = (
        "{ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2375 "
        "--containerd=/run/containerd/containerd.sock $DOCKER_OPTS ; ignore_errors=no ; start_time=[n/a] }"
    )
    flags = dockerd_unit_flags(show)
    assert flags == ["-H", "fd://", "-H", "tcp://0.0.0.0:2375", "--containerd=/run/containerd/containerd.sock"]
    assert _merge("{}", unit_flags=flags)["unit_tcp"] == ["tcp://0.0.0.0:2375"]
    assert dockerd_unit_flags("") == []


def test_log_options_of_another_driver_are_not_carried_over() -> None:
    same = _merge(json.dumps({"log-driver": "json-file", "log-opts": {"labels": "service"}}))["config"]
    assert same["log-opts"] == {"labels": "service", "max-size": "10m", "max-file": "5"}
    other = _merge(json.dumps({"log-driver": "syslog", "log-opts": {"syslog-address": "udp://log:514"}}))["config"]
    assert other["log-driver"] == "json-file"
    assert other["log-opts"] == {"max-size": "10m", "max-file": "5"}


def test_allowlisted_registry_is_kept_and_unconfined_seccomp_removed() -> None:
    existing = json.dumps({"insecure-registries": ["a:5000", "b:5000"], "seccomp-profile": "unconfined"})
    merged = _merge(existing, insecure_registries_allowed=["b:5000"], seccomp=True)
    assert merged["config"]["insecure-registries"] == ["b:5000"]
    assert merged["kept_registries"] == ["b:5000"] and merged["removed_registries"] == ["a:5000"]
    assert "seccomp-profile" not in merged["config"] and merged["seccomp_removed"]


@pytest.mark.parametrize("text", ["{", "[1, 2]"])
def test_unreadable_daemon_json_is_refused(text: str) -> None:
    with pytest.raises(AnsibleFilterError):
        _merge(text)


# --- Compose ---------------------------------------------------------------------------------


def _override(text: str, services: dict[str, Any] | None = None, active: list[str] | None = None) -> dict[str, Any]:
    defaults = _defaults()
    return compose_override(
        text,
        "/opt/montecarlo/docker-compose.yml",
        defaults["container_hardening_compose_services"] if services is None else services,
        defaults["container_hardening_compose_service_defaults"],
        COMPOSE_CONTROLS if active is None else active,
    )


def _scan(directory: Path) -> list[Finding]:
    found: list[Finding] = []
    scan_container_files(ScanContext(default_catalog(), emit=found.append), [ScanRoot(directory)])
    return found


def _compose_status(findings: list[Finding]) -> dict[tuple[str, str], Status]:
    compose = [f for f in findings if f.control_id.startswith("CTR-C")]
    return {(f.evidence.details["service"], f.control_id): f.status for f in compose}


def test_lab_compose_file_passes_every_compose_control_with_the_override(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(LAB_COMPOSE.read_text())
    before = _compose_status(_scan(tmp_path))
    assert {k for k, s in before.items() if s is Status.FAIL} == SEEDED_COMPOSE_FAILURES
    generated = _override(LAB_COMPOSE.read_text())
    assert generated["not_applied"] == []
    (tmp_path / "docker-compose.override.yml").write_text(generated["content"])
    after = _compose_status(_scan(tmp_path))
    assert set(after) == set(before)
    assert {k for k, s in after.items() if s is not Status.PASS} == set()
    model = effective_compose([tmp_path / "docker-compose.yml", tmp_path / "docker-compose.override.yml"])
    simulation = model["services"]["simulation"]
    assert "network_mode" not in simulation and simulation["ports"] == ["127.0.0.1:8000:8000"]
    assert simulation["volumes"] == ["./results:/opt/montecarlo/results"]
    assert "cap_add" not in model["services"]["worker"] and "pid" not in model["services"]["worker"]


def test_override_keeps_what_the_file_already_does_well() -> None:
    text = yaml.safe_dump(
        {
            "services": {
                "api": {
                    "image": "api:1",
                    "user": "app",
                    "mem_limit": "4g",
                    "restart": "on-failure:3",
                    "cap_add": ["NET_BIND_SERVICE"],
                    "volumes": ["/etc/localtime:/etc/localtime:ro", "/etc:/host-etc"],
                }
            }
        }
    )
    generated = _override(text, services={})
    service = yaml.safe_load(generated["content"].replace("!override", "").replace("!reset", ""))["services"]["api"]
    assert "user" not in service and "restart" not in service and "mem_limit" not in service
    assert service["pids_limit"] == 256 and service["cpus"] == 1.0
    assert service["volumes"] == ["/etc/localtime:/etc/localtime:ro"]
    # No healthcheck test is configured for this service: reported, never invented.
    assert [n["control"] for n in generated["not_applied"]] == ["CTR-C-010"]


def test_dangerous_capabilities_are_never_added_and_waived_controls_left_alone(tmp_path: Path) -> None:
    text = LAB_COMPOSE.read_text()
    generated = _override(text, services={"worker": {"cap_add": ["SYS_ADMIN", "CHOWN"]}})
    assert {"control": "CTR-C-005", "target": "/opt/montecarlo/docker-compose.yml: worker"} in [
        {k: v for k, v in n.items() if k != "reason"} for n in generated["not_applied"]
    ]
    (tmp_path / "docker-compose.yml").write_text(text)
    (tmp_path / "docker-compose.override.yml").write_text(generated["content"])
    model = effective_compose([tmp_path / "docker-compose.yml", tmp_path / "docker-compose.override.yml"])
    assert model["services"]["worker"]["cap_add"] == ["CHOWN"]

    waived = _override(text, active=[c for c in COMPOSE_CONTROLS if c != "CTR-C-001"])
    (tmp_path / "docker-compose.override.yml").write_text(waived["content"])
    model = effective_compose([tmp_path / "docker-compose.yml", tmp_path / "docker-compose.override.yml"])
    failing = {v.control_id for v in check_service(model["services"]["simulation"]) if v.failed}
    assert failing == {"CTR-C-001"}


def _seen(exists: bool = True, overrides: dict[str, bool] | None = None) -> dict[str, Any]:
    text = base64.b64encode(LAB_COMPOSE.read_bytes()).decode() if exists else ""
    return {"exists": exists, "text": text, "overrides": overrides or {}}


def test_compose_plan_never_overwrites_a_users_override() -> None:
    defaults = _defaults()
    args = (
        defaults["container_hardening_compose_services"],
        defaults["container_hardening_compose_service_defaults"],
        COMPOSE_CONTROLS,
    )
    files = ["/a/docker-compose.yml", "/b/docker-compose.yml", "/c/compose.yaml", "/d/docker-compose.yml"]
    seen = [
        _seen(),
        _seen(overrides={"docker-compose.override.yml": False}),
        _seen(overrides={"compose.override.yaml": True}),
        _seen(exists=False),
    ]
    plan = compose_plan(files, seen, *args)
    assert [p.get("path") for p in plan] == ["/a/docker-compose.override.yml", None, "/c/compose.override.yaml", None]
    assert "override file of the user's own" in plan[1]["problem"]
    assert plan[3]["problem"] == "no such file"
    assert [s["target"] for p in plan for s in p["summary"]] == ["/b/docker-compose.yml", "/d/docker-compose.yml"]
    assert compose_plan([], seen, *args) == []
    assert override_path("/x/docker-compose.yaml") == "/x/docker-compose.override.yaml"
