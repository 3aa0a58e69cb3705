"""The host audit module evaluates exactly the catalog's host check types; the secrets checks never
return a secret value."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scanners.catalog import CHECK_TYPES, default_catalog
from tests.unit.module_loader import library

AUDIT = library("host_audit", uses=("preaudit_discovery",))
HOST = AUDIT.Host()


def test_catalog_host_check_types_are_the_modules_evaluators() -> None:
    host_types = {name for name, spec in CHECK_TYPES.items() if spec.evaluator == "host"}
    assert host_types == set(AUDIT.EVALUATORS)


def _secret_files(tmp_path: Path, **check: Any) -> dict[str, Any]:
    result: dict[str, Any] = AUDIT.evaluate(HOST, {"id": "X", "check": {"type": "secret_files", **check}})
    return result


def test_secret_files_finds_by_full_path_pattern_and_judges_mode_owner_group(tmp_path: Path) -> None:
    app = tmp_path / "opt" / "app"
    (app / "conf").mkdir(parents=True)
    env = app / ".env"
    env.write_text("A=1\n")
    env.chmod(0o644)
    (app / ".env.example").write_text("A=\n")
    ok = app / "conf" / "prod.env"
    ok.write_text("B=2\n")
    ok.chmod(0o600)
    (app / "notes.txt").write_text("x")
    result = _secret_files(
        tmp_path,
        paths=[str(tmp_path / "opt")],
        patterns=["*/.env", "*/.env.*", "*.env"],
        exclude=["*.example"],
        mode="0640",
        owner="root",
    )
    assert result["status"] == "fail"
    assert result["details"]["wrong"] == [str(env)]
    assert sorted(result["details"]["files"]) == sorted([str(env), str(ok)])
    assert result["observed"][str(env)] == "0644 root:root"

    env.chmod(0o640)
    assert _secret_files(tmp_path, paths=[str(app)], patterns=["*/.env"], mode="0640", owner="root")["status"] == "pass"
    strict_group = _secret_files(tmp_path, paths=[str(app)], patterns=["*/.env"], mode="0640", group=["montecarlo"])
    assert strict_group["status"] == "fail"
    none = _secret_files(tmp_path, paths=[str(tmp_path / "nothing")], patterns=["*"], mode="0600")
    assert none["status"] == "not_applicable"


def test_secret_files_can_require_a_marker_and_skips_symlinks(tmp_path: Path) -> None:
    keys = tmp_path / "ssl"
    keys.mkdir()
    key = keys / "server.key"
    key.write_text("-----BEGIN EC " + "PRIVATE KEY-----\nMHc=\n")
    key.chmod(0o644)
    cert = keys / "server.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMII=\n")
    cert.chmod(0o644)
    os.symlink(key, keys / "link.key")
    result = _secret_files(
        tmp_path, paths=[str(keys)], patterns=["*.key", "*.pem"], contains="PRIVATE KEY-----", mode="0600"
    )
    assert result["details"]["files"] == [str(key)]
    assert result["details"]["wrong"] == [str(key)]
    assert "MHc" not in json.dumps(result)


def test_secret_files_respects_the_depth_limit(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / ".env").write_text("X=1\n")
    assert _secret_files(tmp_path, paths=[str(tmp_path)], patterns=["*/.env"], mode="0600", max_depth=2)["status"] == (
        "not_applicable"
    )
    assert _secret_files(tmp_path, paths=[str(tmp_path)], patterns=["*/.env"], mode="0600", max_depth=4)["status"] == (
        "fail"
    )


CANARY = "canary-7d1f0c9e5b2a4f6e8d3c1b0a9f8e7d6c"
KEYS = [
    {"name": "JWT_SECRET", "min_length": 32},
    {"name": "API_KEY"},
    {"name": "DATABASE_URL", "kind": "url", "min_length": 16},
]
DENY = ["changeme", "password"]


def _strength(path: Path, keys: list[Any] = KEYS) -> dict[str, Any]:
    check = {"type": "env_secret_strength", "path": str(path), "keys": keys, "min_length": 32, "denylist": DENY}
    result: dict[str, Any] = AUDIT.evaluate(HOST, {"id": "SEC-003", "check": check})
    return result


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("JWT_SECRET=changeme", "weak: a known default value"),
        ("JWT_SECRET='ChangeMe'", "weak: a known default value"),  # pragma: allowlist secret
        ("export JWT_SECRET=short", "weak: 5 bytes, fewer than 32"),
        ('JWT_SECRET=""', "weak: empty"),
        ("JWT_SECRET=" + "a" * 40, "weak: one repeated character"),
        ("JWT_SECRET=" + CANARY, "ok"),
    ],
)
def test_env_secret_strength_names_the_reason_never_the_value(tmp_path: Path, line: str, reason: str) -> None:
    env = tmp_path / ".env"
    env.write_text(f"# settings\n{line}\nAPI_KEY={CANARY}\nDATABASE_URL=postgresql://app:{CANARY}@db:5432/x\n")
    result = _strength(env)
    assert result["observed"]["JWT_SECRET"] == reason
    assert result["observed"]["API_KEY"] == "ok"  # pragma: allowlist secret
    assert result["observed"]["DATABASE_URL"] == "ok"
    assert result["status"] == ("pass" if reason == "ok" else "fail")
    text = json.dumps(result)
    assert CANARY not in text and "changeme" not in text.lower()
    assert "short" not in text


def test_env_secret_strength_missing_keys_url_passwords_and_absent_files(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DATABASE_URL=postgresql://app:password@db/x\nOTHER=1\n")  # pragma: allowlist secret
    result = _strength(env)
    assert result["status"] == "fail"
    assert result["details"] == {"weak": ["DATABASE_URL"], "missing": ["JWT_SECRET", "API_KEY"]}
    assert result["observed"]["DATABASE_URL"] == "weak: a known default value"

    env.write_text(f"JWT_SECRET={CANARY}\nAPI_KEY={CANARY}\nDATABASE_URL=postgresql:///x?host=/run/postgresql\n")
    assert _strength(env)["status"] == "pass"  # no password in the URL: nothing to judge

    assert _strength(tmp_path / "absent.env")["status"] == "not_applicable"


def _discovered(env_files: list[Path]) -> Any:
    """A host whose discovery found these environment files (as a service's unit named them)."""
    host = AUDIT.Host()
    host._cache["platform"] = {
        "env_files": [
            {"path": str(p), "source": f"systemd:app.service EnvironmentFile= /u:{i}"} for i, p in enumerate(env_files)
        ],
        "services": [],
        "compose_files": [],
        "sweep": {"roots": ["/opt", "/srv"], "truncated": False},
        "nginx": {"method": None},
    }
    return host


def _catalog_check(control_id: str) -> dict[str, Any]:
    return {"id": control_id, "check": dict(default_catalog().get(control_id).check)}


def test_sec_003_judges_every_discovered_env_file_as_its_own_item(tmp_path: Path) -> None:
    good = tmp_path / "srv" / "app" / ".env"
    good.parent.mkdir(parents=True)
    good.write_text(f"JWT_SECRET={CANARY}\nAPI_KEY={CANARY}\nDATABASE_URL=postgresql://app:{CANARY}@db/x\n")
    passed = AUDIT.evaluate(_discovered([good]), _catalog_check("SEC-003"))
    assert passed["status"] == "pass"
    [item] = passed["items"]
    assert (item["status"], item["path"], item["source"]) == (
        "pass",
        str(good),
        "systemd:app.service EnvironmentFile= /u:0",
    )
    assert item["details"]["source"] == item["source"]

    weak = tmp_path / "home" / "old" / ".env"
    weak.parent.mkdir(parents=True)
    weak.write_text("JWT_SECRET=changeme\n")
    failed = AUDIT.evaluate(_discovered([good, weak]), _catalog_check("SEC-003"))
    assert failed["status"] == "fail"
    assert [(i["path"], i["status"]) for i in failed["items"]] == [(str(good), "pass"), (str(weak), "fail")]
    assert failed["message"] == f"{weak}: weak or missing: JWT_SECRET"
    # Keys a discovered file does not hold are named, not failed: the file may be another service's.
    assert failed["items"][1]["details"]["missing"] == ["API_KEY", "DATABASE_URL"]
    assert "changeme" not in json.dumps(failed)


def test_sec_003_is_not_applicable_without_env_files_and_says_where_discovery_looked(tmp_path: Path) -> None:
    result = AUDIT.evaluate(_discovered([]), _catalog_check("SEC-003"))
    assert result["status"] == "not_applicable"
    assert result["message"].startswith("discovery found no environment file (looked at 0 systemd service(s)")
    assert "a sweep of /opt, /srv" in result["message"]
    assert "items" not in result

    unrelated = tmp_path / "other.env"
    unrelated.write_text("LOG_LEVEL=debug\n")
    result = AUDIT.evaluate(_discovered([unrelated]), _catalog_check("SEC-003"))
    assert result["status"] == "not_applicable"
    assert result["items"][0]["message"] == f"{unrelated} holds none of JWT_SECRET, API_KEY, DATABASE_URL"


def test_secret_files_also_judges_the_files_discovery_found(tmp_path: Path) -> None:
    stray = tmp_path / "home" / "legacy" / ".env"
    stray.parent.mkdir(parents=True)
    stray.write_text("A=1\n")
    stray.chmod(0o644)
    check = dict(default_catalog().get("SEC-001").check, paths=[str(tmp_path / "opt")])
    result = AUDIT.evaluate(_discovered([stray]), {"id": "SEC-001", "check": check})
    assert result["status"] == "fail"
    assert result["details"]["wrong"] == [str(stray)]


def test_the_catalogs_secret_checks_are_host_checks() -> None:
    catalog = default_catalog()
    for control_id in ("SEC-001", "SEC-002", "SEC-003", "SEC-004", "SEC-005"):
        control = catalog.get(control_id)
        assert control.evaluator == "host" and control.role == "secrets_hardening"


@pytest.mark.parametrize(
    ("cap_eff", "expected"), [("000001ffffffffff", True), ("00000000a80425fb", False), ("0000000000001000", True)]
)
def test_net_admin_follows_the_effective_capability_set(
    monkeypatch: pytest.MonkeyPatch, cap_eff: str, expected: bool
) -> None:
    # a80425fb is Docker's default set for a container: no CAP_NET_ADMIN (bit 12).
    status = f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\n"
    monkeypatch.setattr(AUDIT, "read_text", lambda path: status if path == "/proc/self/status" else None)
    assert AUDIT.Host().net_admin is expected


def test_without_net_admin_the_firewall_check_is_not_applicable_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    host = AUDIT.Host()
    host._cache.update({"net_admin": False, "container": "docker"})
    result = AUDIT.evaluate(host, {"id": "OS-FW-002", "check": {"type": "nftables", "rule": "input_policy_drop"}})
    assert result["status"] == "not_applicable"
    assert "docker container has no CAP_NET_ADMIN" in result["message"]


def test_a_check_of_something_not_installed_is_not_applicable(tmp_path: Path) -> None:
    # CTR-D-011 watches dockerd with audit rules: a host without Docker has nothing to watch.
    absent = str(tmp_path / "usr" / "bin" / "dockerd")
    check = {"type": "auditd_rule", "keys": ["docker"], "applies_if_any": [absent]}
    result = AUDIT.evaluate(HOST, {"id": "CTR-D-011", "check": check})
    assert (result["status"], result["message"]) == ("not_applicable", f"none of {absent} exists on this host")
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "dockerd").touch()
    assert AUDIT.evaluate(HOST, {"id": "CTR-D-011", "check": check})["status"] != "not_applicable"
    assert "applies_if_any" in default_catalog().get("CTR-D-011").check
