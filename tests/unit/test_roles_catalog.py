"""Roles and catalog agree: each role implements exactly the catalog's controls for it, tags
every task with control ids the catalog knows, declares every variable, and its defaults meet
the catalog's expectations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanners.catalog import default_catalog

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "vars" / "main.yml").exists())
ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z][A-Z0-9]*)*-[0-9]{3}$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _tasks(role: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for task in items or []:
            tasks.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key, []))

    for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
        walk(_yaml(path))
    return tasks


@pytest.mark.parametrize("role", ROLES)
def test_role_implements_exactly_its_catalog_controls(role: str) -> None:
    declared = _yaml(ROOT / "roles" / role / "vars" / "main.yml")[f"_{role}_controls"]
    in_catalog = [c.id for c in default_catalog() if c.role == role]
    assert sorted(declared) == sorted(in_catalog)


@pytest.mark.parametrize("role", ROLES)
def test_every_task_is_named_by_control_or_area_and_tagged_with_known_ids(role: str) -> None:
    catalog = default_catalog()
    for task in _tasks(role):
        name = task.get("name", "")
        prefix = name.split(" | ", 1)[0]
        assert " | " in name, f"{role}: task name {name!r} is not '<ID> | <what>'"
        assert ID.match(prefix) or prefix.isupper(), f"{role}: {name!r}"
        if ID.match(prefix):
            assert prefix in catalog, f"{role}: {name!r} names an unknown control"
            assert prefix in task.get("tags", []), f"{role}: {name!r} is not tagged with its id"
        for tag in task.get("tags", []):
            if ID.match(str(tag)):
                assert tag in catalog, f"{role}: tag {tag} of {name!r} is not a catalog control"


@pytest.mark.parametrize("role", sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults").exists()))
def test_every_default_is_declared_in_the_argument_specs(role: str) -> None:
    defaults = _yaml(ROOT / "roles" / role / "defaults" / "main.yml") or {}
    spec = _yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(k for k, v in spec.items() if not v.get("required"))
    for name, option in spec.items():
        assert option.get("description"), f"{role}: {name} has no description"
        assert option.get("type"), f"{role}: {name} has no type"
        if name in defaults:
            assert option["default"] == defaults[name], f"{role}: default of {name} differs from defaults/main.yml"


def test_os_kernel_defaults_meet_the_catalog() -> None:
    defaults = _yaml(ROOT / "roles" / "os_hardening" / "defaults" / "main.yml")["os_hardening_sysctl_controls"]
    for control in default_catalog():
        if control.check_type == "sysctl" and control.role == "os_hardening":
            assert {k: str(v) for k, v in defaults[control.id].items()} == {
                k: str(v) for k, v in control.check["values"].items()
            }, control.id


def test_os_login_defs_defaults_meet_the_catalog() -> None:
    defaults = _yaml(ROOT / "roles" / "os_hardening" / "defaults" / "main.yml")
    catalog = default_catalog()
    assert defaults["os_hardening_password_max_days"] <= catalog.get("OS-ACC-004").check["value"]
    assert defaults["os_hardening_password_warn_age"] >= catalog.get("OS-ACC-017").check["value"]
    assert defaults["os_hardening_umask"] in catalog.get("OS-ACC-006").check["value"]
    assert defaults["os_hardening_encrypt_method"] in catalog.get("OS-ACC-016").check["value"]
    assert defaults["os_hardening_pwquality"]["minlen"] >= 14


def test_ssh_defaults_meet_the_catalog() -> None:
    defaults = _yaml(ROOT / "roles" / "ssh_hardening" / "defaults" / "main.yml")
    catalog = default_catalog()
    assert set(defaults["ssh_hardening_ciphers"]) <= set(catalog.get("SSH-012").check["value"])
    assert set(defaults["ssh_hardening_macs"]) <= set(catalog.get("SSH-013").check["value"])
    assert set(defaults["ssh_hardening_kex_algorithms"]) <= set(catalog.get("SSH-011").check["value"])
    assert defaults["ssh_hardening_max_auth_tries"] <= catalog.get("SSH-005").check["value"]
    assert defaults["ssh_hardening_host_rsa_min_bits"] >= catalog.get("SSH-014").check["min_rsa_bits"]
