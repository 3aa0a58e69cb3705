"""The control catalog: the shipped data is valid, and every kind of mistake is a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scanners.catalog import CHECK_TYPES, DISCOVERY_LISTS, FRAMEWORKS, default_catalog, load_catalog
from scanners.errors import InputError
from tests.unit.module_loader import module_utils

GOOD: dict[str, Any] = {
    "id": "TST-001",
    "title": "A test control",
    "severity": "medium",
    "rationale": "Because.",
    "remediation": "Fix it.",
    "references": {"soc2": ["CC6.1"], "iso27001": ["A.8.9"]},
    "check": {"type": "sysctl", "values": {"net.ipv4.ip_forward": 0}},
}


def _write(tmp_path: Path, controls: list[dict[str, object]], name: str = "test.yml") -> Path:
    (tmp_path / name).write_text(yaml.safe_dump({"area": "test", "controls": controls}))
    return tmp_path


def test_shipped_catalog_loads_with_stable_digest() -> None:
    catalog = default_catalog()
    assert len(catalog) >= 26
    assert catalog.get("SSH-001").check["key"] == "permitrootlogin"
    again = load_catalog()
    assert again.digest == catalog.digest and len(catalog.digest) == 64


def test_every_shipped_control_serves_soc2_and_iso27001() -> None:
    for control in default_catalog():
        assert control.references["soc2"] and control.references["iso27001"], control.id
        assert set(control.references) <= set(FRAMEWORKS) | {"mozilla-tls", "cwe", "cve", "owasp"}


def test_digest_changes_when_a_control_changes(tmp_path: Path) -> None:
    first = load_catalog(_write(tmp_path, [GOOD])).digest
    second = load_catalog(_write(tmp_path, [{**GOOD, "severity": "high"}])).digest
    assert first != second


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({**GOOD, "colour": "red"}, "test.yml: control TST-001: unknown key(s) colour"),
        ({k: v for k, v in GOOD.items() if k != "severity"}, "test.yml: control TST-001: missing key(s) severity"),
        ({**GOOD, "severity": "severe"}, "control TST-001: unknown severity 'severe'"),
        ({**GOOD, "references": {"soc2": ["CC6.1"]}}, "control TST-001: missing references for iso27001"),
        ({**GOOD, "references": {}}, "control TST-001: references must be a non-empty mapping"),
        ({**GOOD, "references": {**GOOD["references"], "pci": ["1"]}}, "unknown framework 'pci'"),
        ({**GOOD, "check": {"type": "telepathy"}}, "control TST-001: unknown check type 'telepathy'"),
        ({**GOOD, "check": {"type": "sysctl"}}, "check sysctl is missing values"),
        ({**GOOD, "check": {"type": "sysctl", "values": {"x": 1}, "extra": 2}}, "unknown parameter(s) extra"),
        ({**GOOD, "check": {"type": "sshd_config", "key": "x", "op": "like", "value": 1}}, "unknown op 'like'"),
        ({**GOOD, "id": "bad id"}, "invalid or missing control id 'bad id'"),
        ({**GOOD, "role": "magic_hardening"}, "unknown role 'magic_hardening'"),
        ({**GOOD, "title": ""}, "title must be a non-empty string"),
        (
            {**GOOD, "check": {"type": "env_secret_strength", "keys": ["A"]}},
            "check env_secret_strength needs exactly one of path, paths_from",
        ),
        (
            {**GOOD, "check": {"type": "env_secret_strength", "keys": ["A"], "path": "/x", "paths_from": "y"}},
            "check env_secret_strength needs exactly one of path, paths_from",
        ),
        (
            {**GOOD, "check": {"type": "env_secret_strength", "keys": ["A"], "paths_from": "discovery.everything"}},
            "paths_from 'discovery.everything' is not a discovery list",
        ),
        (
            {**GOOD, "check": {"type": "auditd_rule", "keys": ["docker"], "applies_if_any": ["dockerd"]}},
            "applies_if_any must be a list of absolute paths",
        ),
    ],
)
def test_invalid_controls_name_file_and_control(tmp_path: Path, control: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_catalog(_write(tmp_path, [control]))


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, [GOOD], "a.yml")
    _write(tmp_path, [GOOD], "b.yml")
    with pytest.raises(InputError, match=r"b.yml: control TST-001: duplicate id \(also defined in a.yml\)"):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("controls: [\n", "invalid YAML at line"),
        ("- 1\n", "expected a mapping"),
        ("controls: 3\n", "'controls' must be a list"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.yml").write_text(text)
    with pytest.raises(InputError, match=f"catalog bad.yml: {message}"):
        load_catalog(tmp_path)


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no controls"):
        load_catalog(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_catalog(tmp_path / "nope")


def test_host_checks_payload_carries_ids_and_checks() -> None:
    payload = default_catalog().host_checks()
    assert payload and all(CHECK_TYPES[item["check"]["type"]].evaluator == "host" for item in payload)
    assert {"id", "check", "container"} == set(payload[0])


def test_paths_from_names_exactly_the_lists_discovery_returns() -> None:
    discovery = module_utils("preaudit_discovery")
    assert {f"discovery.{name}" for name in discovery.CATEGORIES} == DISCOVERY_LISTS
