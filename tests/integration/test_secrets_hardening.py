"""secrets_hardening on the lab fleet: owners and modes of secret files, strong and rotated values,
the platform answering through nginx after a rotation, a rotation that breaks the service being
rolled back, and canaries that must never appear in any output, log or artifact.

Secret values are planted and read through the host's root file system as the controller mounts
it (the overlay under the lab directory), never through Ansible, so that the test itself puts no
value into a run's output or the host's journal. They stay in variables: assertions compare
digests or booleans.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from scanners.ansible_run import RunResult
from scanners.catalog import default_catalog
from scanners.project import project_root
from tests.integration.conftest import Converged, Lab
from tests.integration.hardening_support import ENV_FILE, KEY_FILE, changed_tasks, digest

pytestmark = pytest.mark.lab

CONTROL_TESTS = {
    "SEC-001": "test_environment_file_and_keys_have_their_owners_and_modes",
    "SEC-002": "test_environment_file_and_keys_have_their_owners_and_modes",
    "SEC-003": "test_weak_secrets_are_replaced_and_the_host_audit_agrees",
    "SEC-004": "test_planted_docker_and_credential_files_are_made_private",
    "SEC-005": "test_planted_docker_and_credential_files_are_made_private",
}
DOCKER_CONFIG = "root/.docker/config.json"
PGPASS = "home/ops/.pgpass"
EXTRA_KEY = "opt/montecarlo/tls/extra.key"


def test_every_role_control_has_references_and_a_test() -> None:
    role_controls = {c.id: c for c in default_catalog() if c.role == "secrets_hardening"}
    assert set(CONTROL_TESTS) == set(role_controls)
    for control_id, test_name in CONTROL_TESTS.items():
        references = role_controls[control_id].references
        assert "CC6.1" in references["soc2"], control_id
        assert {"A.5.17", "A.8.24"} & set(references["iso27001"]), control_id
        assert callable(getattr(sys.modules[__name__], test_name)), test_name


def _root(lab: Lab, name: str) -> Path:
    return Path(lab.fleet.state().hosts[name].root)


def _env(lab: Lab, name: str) -> dict[str, str]:
    """The host's environment file, read through its mounted root (never printed)."""
    values = {}
    for line in (_root(lab, name) / ENV_FILE.lstrip("/")).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            values[key] = value
    return values


def _audit(lab: Lab, name: str, ids: list[str]) -> dict[str, Any]:
    """The catalog's own host checks of ``ids``, evaluated on the host by host_audit."""
    checks = [c for c in default_catalog().host_checks() if c["id"] in ids]
    run = lab.module("host_audit", json.dumps({"checks": checks, "discover_tls": False}), pattern=name)
    for event in run.events:
        if event.get("event") == "runner_on_ok":
            controls: dict[str, Any] = event["event_data"]["res"]["controls"]
            return controls
    raise AssertionError(run.stdout[-2000:])


def _request(lab: Lab, name: str, path: str, headers: dict[str, str], method: str = "GET") -> tuple[int, bytes]:
    context = ssl._create_unverified_context()
    url = f"https://127.0.0.1:{lab.port(name, 'https')}{path}"
    request = urllib.request.Request(url, headers=headers, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _token(lab: Lab, name: str, api_key: str) -> str:
    status, body = _request(lab, name, "/token", {"X-API-Key": api_key}, method="POST")
    assert status == 200
    token: str = json.loads(body)["token"]
    return token


def _works(lab: Lab, name: str, headers: dict[str, str]) -> bool:
    return _request(lab, name, "/simulate/pi?samples=1000&seed=5", headers)[0] == 200


# -- converged hosts ------------------------------------------------------------------------


def test_environment_file_and_keys_have_their_owners_and_modes(lab: Lab, converged: Converged) -> None:
    for host in converged.hosts:
        files = lab.host(host)
        env = files.file(ENV_FILE)
        assert (env.mode, env.user, env.group) == (0o640, "root", "montecarlo")
        key = files.file(KEY_FILE)
        assert (key.mode, key.user) == (0o600, "root")
        backups = files.file("/var/backups/preaudit/secrets")
        assert (backups.mode, backups.user) == (0o700, "root")
        assert all(files.file(f"/var/backups/preaudit/secrets/{b}").mode == 0o600 for b in backups.listdir())
        assert files.service("montecarlo").is_running


def test_weak_secrets_are_replaced_and_the_host_audit_agrees(lab: Lab, converged: Converged) -> None:
    deny = {d.lower() for d in default_catalog().get("SEC-003").check["denylist"]}
    for host in converged.hosts:
        values = _env(lab, host)
        jwt = values["JWT_SECRET"]
        strong = len(jwt) >= 32 and jwt.lower() not in deny and len(set(jwt)) > 10
        assert strong, "JWT_SECRET on the converged host is not a strong random value"
        audit = _audit(lab, host, ["SEC-001", "SEC-002", "SEC-003", "SEC-004", "SEC-005"])
        assert {cid: r["status"] for cid, r in audit.items()} == {
            "SEC-001": "pass",
            "SEC-002": "pass",
            "SEC-003": "pass",
            "SEC-004": "not_applicable",
            "SEC-005": "not_applicable",
        }
        verdicts = audit["SEC-003"]["observed"][ENV_FILE]  # per discovered environment file
        assert set(verdicts) == {"JWT_SECRET", "API_KEY", "DATABASE_URL"} and set(verdicts.values()) == {"ok"}


def test_secrets_converge_again_without_changes(converged: Converged) -> None:
    assert changed_tasks(converged.second, ["secrets_hardening"]) == []
    first = changed_tasks(converged.first, ["secrets_hardening"])
    assert any("new random values" in task for task in first)
    assert any("Restart the services" in task for task in first)


# -- a fresh host with canaries --------------------------------------------------------------


@dataclass
class Canaries:
    jwt: str = field(default_factory=lambda: f"canary-jwt-{secrets.token_hex(6)}")  # weak: replaced
    api: str = field(default_factory=lambda: f"canary-api-{secrets.token_hex(16)}")  # strong: kept
    db: str = field(default_factory=lambda: f"canary-db-{secrets.token_hex(12)}")
    key: str = field(default_factory=lambda: f"canary-key-{secrets.token_hex(16)}")
    docker: str = field(default_factory=lambda: f"canary-registry-{secrets.token_hex(8)}")
    pgpass: str = field(default_factory=lambda: f"canary-pg-{secrets.token_hex(8)}")

    def needles(self) -> dict[str, str]:
        docker_auth = base64.b64encode(f"ci:{self.docker}".encode()).decode()
        return {**{k: v for k, v in vars(self).items()}, "docker-auth": docker_auth}


@dataclass
class FreshSecrets:
    name: str
    canaries: Canaries
    planted_audit: dict[str, Any]
    planted_modes: dict[str, str]
    converge: RunResult
    modes: dict[str, str]
    jwt_after_converge: str
    token_before: str
    rotate: RunResult
    jwt_after_rotate: str
    old_token_after_rotate: int
    new_token_works: bool
    api_key_works: bool
    health: int
    check: RunResult
    vault_dir: Path
    vault_password: str
    backups: list[Path]
    journal: str
    logs: dict[str, bytes]


def _plant(root: Path, canaries: Canaries) -> None:
    env = root / ENV_FILE.lstrip("/")
    env.write_text(
        "# Monte Carlo simulation service settings\n"
        f"DATABASE_URL=postgresql://montecarlo:{canaries.db}@db.montecarlo.lab:5432/simulations\n"
        f"JWT_SECRET={canaries.jwt}\nAPI_KEY={canaries.api}\nBIND=127.0.0.1\nPORT=8000\n"
    )
    env.chmod(0o644)
    key = root / EXTRA_KEY
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("-----BEGIN PRIVATE " + f"KEY-----\n{canaries.key}\n-----END PRIVATE KEY-----\n")
    key.chmod(0o644)
    docker = root / DOCKER_CONFIG
    docker.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"ci:{canaries.docker}".encode()).decode()
    docker.write_text(json.dumps({"auths": {"registry.montecarlo.lab": {"auth": auth}}}))
    docker.chmod(0o644)
    pgpass = root / PGPASS
    pgpass.write_text(f"db.montecarlo.lab:5432:simulations:montecarlo:{canaries.pgpass}\n")
    ops = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("ops:"))
    os.chown(pgpass, int(ops[2]), int(ops[3]))
    pgpass.chmod(0o644)


def _modes(root: Path) -> dict[str, str]:
    result = {}
    for rel in (ENV_FILE.lstrip("/"), KEY_FILE.lstrip("/"), EXTRA_KEY, DOCKER_CONFIG, PGPASS):
        st = (root / rel).stat()
        result["/" + rel] = f"{st.st_mode & 0o7777:04o} {st.st_uid}:{st.st_gid}"
    return result


@pytest.fixture(scope="module")
def fresh_secrets(lab: Lab) -> Iterator[FreshSecrets]:
    name = lab.names[-1]
    lab.fleet.reset_host(name)
    root = _root(lab, name)
    canaries = Canaries()
    _plant(root, canaries)
    lab.host(name).run("systemctl restart montecarlo")  # the service now reads the planted values
    planted_audit = _audit(lab, name, ["SEC-001", "SEC-002", "SEC-003", "SEC-004", "SEC-005"])
    planted_modes = _modes(root)

    vault_dir = lab.work / "vault"
    password_file = lab.work / "vault-password"
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    vault = {
        "secrets_hardening_vault_copy": True,
        "secrets_hardening_vault_dir": str(vault_dir),
        "secrets_hardening_vault_password_file": str(password_file),
    }
    converge = lab.playbook("site.yml", limit=name, extravars=vault)
    modes = _modes(root)
    jwt1 = _env(lab, name)["JWT_SECRET"]
    token1 = _token(lab, name, canaries.api)
    rotate = lab.playbook("secrets.yml", limit=name, extravars={**vault, "secrets_rotate": ["JWT_SECRET"]})
    jwt2 = _env(lab, name)["JWT_SECRET"]
    old_token = _request(lab, name, "/simulate/pi?samples=1000", {"Authorization": f"Bearer {token1}"})[0]
    new_token_works = _works(lab, name, {"Authorization": f"Bearer {_token(lab, name, canaries.api)}"})
    api_key_works = _works(lab, name, {"X-API-Key": _env(lab, name)["API_KEY"]})
    health = lab.https_get(name, "/health")[0]
    check = lab.playbook("site.yml", limit=name, check=True, diff=True, extravars=vault)
    backups = sorted((root / "var/backups/preaudit/secrets").iterdir())
    journal = lab.host(name).check_output("journalctl --no-pager -o cat")
    logs = {}
    for path in (root / "var/log").rglob("*"):
        if path.is_file() and "journal" not in path.parts:
            logs[str(path.relative_to(root))] = path.read_bytes()
    fresh = FreshSecrets(
        name=name, canaries=canaries, planted_audit=planted_audit, planted_modes=planted_modes, converge=converge,
        modes=modes, jwt_after_converge=jwt1, token_before=token1, rotate=rotate, jwt_after_rotate=jwt2,
        old_token_after_rotate=old_token, new_token_works=new_token_works, api_key_works=api_key_works, health=health,
        check=check, vault_dir=vault_dir, vault_password=password, backups=backups, journal=journal, logs=logs,
    )  # fmt: skip
    yield fresh


def test_the_planted_host_fails_every_secrets_control(fresh_secrets: FreshSecrets) -> None:
    statuses = {cid: r["status"] for cid, r in fresh_secrets.planted_audit.items()}
    assert statuses == {"SEC-001": "fail", "SEC-002": "fail", "SEC-003": "fail", "SEC-004": "fail", "SEC-005": "fail"}
    assert fresh_secrets.planted_audit["SEC-003"]["observed"][ENV_FILE]["JWT_SECRET"].startswith("weak: ")
    assert all(mode.startswith("0644 ") for mode in fresh_secrets.planted_modes.values())


def test_planted_docker_and_credential_files_are_made_private(fresh_secrets: FreshSecrets) -> None:
    assert fresh_secrets.converge.rc == 0, fresh_secrets.converge.stdout[-3000:]
    modes = fresh_secrets.modes
    ops = fresh_secrets.planted_modes["/" + PGPASS].split()[1]
    assert modes[ENV_FILE].startswith("0640 0:")
    assert modes[KEY_FILE] == "0600 0:0"
    assert modes["/" + EXTRA_KEY] == "0600 0:0"
    assert modes["/" + DOCKER_CONFIG] == "0600 0:0"
    assert modes["/" + PGPASS] == f"0600 {ops}"  # the owner is kept


def test_rotation_keeps_the_platform_answering_through_nginx(fresh_secrets: FreshSecrets) -> None:
    f = fresh_secrets
    assert f.rotate.rc == 0, f.rotate.stdout[-3000:]
    assert digest(f.jwt_after_converge) != digest(f.canaries.jwt)
    assert digest(f.jwt_after_rotate) != digest(f.jwt_after_converge)
    assert f.old_token_after_rotate == 401  # tokens signed with the previous secret are refused
    assert f.new_token_works and f.api_key_works and f.health == 200
    # Each change kept the previous file, root only: the planted one, then the converged one.
    assert len(f.backups) == 2
    previous = [dict(line.split("=", 1) for line in b.read_text().splitlines() if "=" in line) for b in f.backups]
    assert [digest(p["JWT_SECRET"]) for p in previous] == [digest(f.canaries.jwt), digest(f.jwt_after_converge)]
    assert all(b.stat().st_mode & 0o777 == 0o600 for b in f.backups)


def test_the_encrypted_copy_on_the_controller_holds_the_current_file(lab: Lab, fresh_secrets: FreshSecrets) -> None:
    copy = fresh_secrets.vault_dir / fresh_secrets.name / "opt_montecarlo_.env.vault"
    assert copy.stat().st_mode & 0o777 == 0o600 and copy.parent.stat().st_mode & 0o777 == 0o700
    vault = VaultLib([("preaudit", VaultSecret(fresh_secrets.vault_password.encode()))])
    plain = vault.decrypt(copy.read_bytes()).decode()
    current = (_root(lab, fresh_secrets.name) / ENV_FILE.lstrip("/")).read_text()
    assert digest(plain) == digest(current)


def test_check_mode_on_the_converged_host_changes_nothing(fresh_secrets: FreshSecrets) -> None:
    check = fresh_secrets.check
    assert check.rc == 0 and check.total("failures") == 0
    assert changed_tasks(check) == []


def _run_dir(run: RunResult) -> Path:
    return run.artifact_dir.parent.parent  # <private dir>/artifacts/<ident>


def test_no_secret_appears_in_any_output_log_or_artifact(lab: Lab, fresh_secrets: FreshSecrets) -> None:
    f = fresh_secrets
    needles = {
        **f.canaries.needles(),
        "jwt-after-converge": f.jwt_after_converge,
        "jwt-after-rotate": f.jwt_after_rotate,
    }
    haystacks: dict[str, bytes] = {}
    for run_name, run in (("converge", f.converge), ("rotate", f.rotate), ("check", f.check)):
        haystacks[f"{run_name}: stdout"] = run.stdout.encode()
        for path in _run_dir(run).rglob("*"):
            if path.is_file():
                haystacks[f"{run_name}: {path.relative_to(_run_dir(run))}"] = path.read_bytes()
    for path in (project_root() / ".cache" / "ansible-facts").glob("*"):
        haystacks[f"fact cache: {path.name}"] = path.read_bytes()
    for path in f.vault_dir.rglob("*"):
        if path.is_file():
            haystacks[f"vault copy: {path.name}"] = path.read_bytes()
    haystacks["host journal"] = f.journal.encode()
    haystacks.update({f"host {name}": data for name, data in f.logs.items()})
    assert len(haystacks) > 20 and any("job_events" in name for name in haystacks)
    leaks = sorted(
        f"{what} in {where}"
        for where, data in haystacks.items()
        for what, value in needles.items()
        if value.encode() in data
    )
    assert leaks == []


def test_a_rotation_that_breaks_the_service_is_rolled_back(lab: Lab, fresh_secrets: FreshSecrets) -> None:
    f = fresh_secrets
    # PORT is not a secret: declared as one, a random value stops the service from starting.
    broken = {
        "secrets_hardening_env_files": [
            {
                "path": ENV_FILE,
                "group": "montecarlo",
                "service": "montecarlo",
                "keys": [{"name": "PORT", "generate": True}],
            }
        ],
        "secrets_rotate": ["PORT"],
    }
    run = lab.playbook("secrets.yml", limit=f.name, extravars=broken)
    assert run.rc != 0
    assert "did not stay up with its new secrets; its previous environment file was restored" in run.stdout
    assert _env(lab, f.name)["PORT"] == "8000"
    assert lab.host(f.name).service("montecarlo").is_running
    assert lab.https_get(f.name, "/health")[0] == 200
    assert _works(lab, f.name, {"X-API-Key": _env(lab, f.name)["API_KEY"]})
