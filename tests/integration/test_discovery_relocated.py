"""`preaudit scan` finds the platform where the host's own configuration says it is: a lab host with
the platform moved elsewhere (another directory and service name, the Compose project apart, another
nginx site and certificate location, an old .env nothing references), scanned with no --code and no
--host-files, reports every seeded weakness at its new path and says where each file was found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.findings import Finding, ResourceKind, Status
from scanners.lab.ca import ca_paths
from tests.integration.conftest import Lab
from tests.integration.hardening_support import tls_connects
from tests.integration.test_scan_pipeline import FAILING, WEAKNESSES, run_scan, vulndb

__all__ = ["vulndb"]  # the session fixture, shared with the scan pipeline tests
pytestmark = pytest.mark.lab

# Run as root over SSH on a fresh lab host. The service keeps running from its new place.
RELOCATE = r"""
systemctl disable --now montecarlo.service
mv /opt/montecarlo /srv/simsvc
mkdir -p /srv/compose/sim
mv /srv/simsvc/docker-compose.yml /srv/simsvc/Dockerfile /srv/simsvc/requirements.txt /srv/compose/sim/
sed -i 's|env_file: .env|env_file: /srv/simsvc/.env|' /srv/compose/sim/docker-compose.yml
sed -e 's|/opt/montecarlo|/srv/simsvc|g' -e 's|^WorkingDirectory=.*|WorkingDirectory=/srv/simsvc|' \
    /etc/systemd/system/montecarlo.service > /etc/systemd/system/simsvc.service
rm /etc/systemd/system/montecarlo.service
systemctl daemon-reload
systemctl enable --now simsvc.service
mkdir -p /etc/pki/sim
mv /etc/ssl/montecarlo/server.crt /etc/ssl/montecarlo/server.key /etc/pki/sim/
rmdir /etc/ssl/montecarlo
sed 's|/etc/ssl/montecarlo/|/etc/pki/sim/|' /etc/nginx/sites-available/montecarlo > /etc/nginx/sites-available/sim-api
rm /etc/nginx/sites-enabled/montecarlo /etc/nginx/sites-available/montecarlo
ln -s /etc/nginx/sites-available/sim-api /etc/nginx/sites-enabled/sim-api
nginx -t
systemctl reload nginx
mkdir -p /home/legacy/old-deploy
cp /srv/simsvc/.env /home/legacy/old-deploy/.env
chown -R legacy:legacy /home/legacy/old-deploy
systemctl is-active simsvc.service nginx.service
"""
# Where the lab's files went, most specific first.
MOVED = (
    ("/opt/montecarlo/docker-compose.yml", "/srv/compose/sim/docker-compose.yml"),
    ("/opt/montecarlo/Dockerfile", "/srv/compose/sim/Dockerfile"),
    ("/opt/montecarlo/requirements.txt", "/srv/compose/sim/requirements.txt"),
    ("/opt/montecarlo/", "/srv/simsvc/"),
    ("/etc/ssl/montecarlo/", "/etc/pki/sim/"),
)
OLD_PLACES = ("/opt/montecarlo", "/etc/ssl/montecarlo")
STRAY = "/home/legacy/old-deploy/.env"
UNIT = "/etc/systemd/system/simsvc.service"


def new_place(where: str) -> str | None:
    """The new path of a weakness's file (its manifest ``where``), None if it did not move."""
    path = where.split(" (")[0].split(",")[0].strip()
    for old, new in MOVED:
        if path.startswith(old):
            return new + path[len(old) :]
    return None


def reports(finding: Finding, path: str) -> bool:
    """Whether a finding is about ``path``: its file, the files a host check names, or the
    endpoint that serves it (a certificate)."""
    if finding.resource.kind is ResourceKind.ENDPOINT:
        return True
    if finding.resource.path is not None:
        return finding.resource.path == path
    return path in json.dumps(finding.evidence.to_dict())


def found(failing: list[Finding], control: str, moved_to: str | None) -> bool:
    mine = [f for f in failing if f.control_id == control]
    return any(moved_to is None or reports(f, moved_to) for f in mine)


@pytest.fixture
def relocated_host(lab: Lab, fresh_host: str) -> Iterator[str]:
    result = lab.host(fresh_host).run("sh -euc %s", RELOCATE)
    try:
        assert result.rc == 0, result.stderr[-3000:]
        yield fresh_host
    finally:
        lab.reset(fresh_host)


def test_a_relocated_platform_is_found_from_the_hosts_own_configuration(
    lab: Lab, relocated_host: str, vulndb: Path, tmp_path: Path
) -> None:
    host = relocated_host
    scan = run_scan(tmp_path / "scan", "--inventory", str(lab.inventory), "--limit", host, "--vuln-db", str(vulndb))
    assert scan.rc == 0, scan.stderr[-3000:]
    findings = scan.on(host)
    errors = [f"{f.control_id} {f.message}" for f in findings if f.status is Status.ERROR]
    assert not errors, errors
    failing = [f for f in findings if f.status in FAILING]

    # Every weakness seeded into the host's image is still found, the ones whose files moved at
    # their new paths.
    catalog = default_catalog()
    variant = lab.fleet.state().hosts[host].variant
    missed = []
    for weakness in (w for w in WEAKNESSES if variant in w.get("variants", [variant])):
        moved_to = new_place(weakness["where"])
        for control in (c for c in weakness["controls"] if c in catalog):
            if not found(failing, control, moved_to):
                missed.append(f"{weakness['id']} {control} at {moved_to or weakness['where']}")
    assert not missed, "seeded weaknesses not reported where they now are:\n" + "\n".join(missed)
    old = sorted({f.resource.path for f in findings if f.resource.path and f.resource.path.startswith(OLD_PLACES)})
    assert not old, old

    # Each file finding says where discovery found the file.
    def source(control: str, path: str) -> str:
        sources = {
            str(f.evidence.details.get("source")) for f in failing if (f.control_id, f.resource.path) == (control, path)
        }
        assert len(sources) == 1, (control, path, sources)
        return sources.pop()

    assert source("SEC-003", "/srv/simsvc/.env") == f"systemd:simsvc.service EnvironmentFile= {UNIT}:10"
    assert source("SEC-101", "/srv/simsvc/.env") == f"systemd:simsvc.service EnvironmentFile= {UNIT}:10"
    assert source("CODE-001", "/srv/simsvc/app/admin.py") == f"systemd:simsvc.service WorkingDirectory= {UNIT}:9"
    assert source("CTR-C-001", "/srv/compose/sim/docker-compose.yml") == "sweep:/srv"
    assert source("CTR-F-001", "/srv/compose/sim/Dockerfile") == "compose:/srv/compose/sim/docker-compose.yml build"
    assert source("DEP-001", "/srv/compose/sim/requirements.txt").startswith(
        "compose:/srv/compose/sim/docker-compose.yml"
    )
    assert source("SEC-101", "/etc/pki/sim/server.key") == "nginx -T /etc/nginx/sites-enabled/sim-api:15"

    # The old deploy's .env nothing references is found by the sweep, and judged like any other.
    assert source("SEC-003", STRAY) == "sweep:/home/legacy"
    assert source("SEC-101", STRAY) == "sweep:/home/legacy"
    sec003 = {f.resource.path: f.status for f in findings if f.control_id == "SEC-003"}
    assert sec003 == {"/srv/simsvc/.env": Status.FAIL, STRAY: Status.FAIL}

    raw = json.loads((scan.out / "raw" / "host_audit" / f"{host}.json").read_text())
    platform = raw["platform"]
    assert [s["unit"] for s in platform["services"]] == ["simsvc.service"]
    assert platform["tls"][0]["private_key"] == "/etc/pki/sim/server.key"
    assert {f["path"] for f in platform["sweep"]["files"]} == {STRAY, "/srv/compose/sim/docker-compose.yml"}
    assert platform["sweep"]["truncated"] is False


def test_the_roles_harden_the_relocated_platform_where_it_is(lab: Lab, relocated_host: str) -> None:
    # No role variable names the platform: the roles find the env file, the Compose project and
    # the nginx TLS server from the host's own configuration, as the scanner does.
    host = relocated_host
    first = lab.playbook("site.yml", limit=host)
    assert first.rc == 0, first.stdout[-3000:]
    rerun = lab.playbook("site.yml", limit=host)
    assert rerun.rc == 0, rerun.stdout[-3000:]
    assert rerun.per_host()[host]["changed"] == 0, rerun.stdout[-3000:]
    remote = lab.host(host)
    env = remote.file("/srv/simsvc/.env")
    assert (env.user, env.group, env.mode) == ("root", "montecarlo", 0o640)
    assert not env.contains("^JWT_SECRET=changeme$")
    assert remote.service("simsvc").is_running
    override = remote.file("/srv/compose/sim/docker-compose.override.yml")
    assert override.exists and override.contains("Managed by preaudit")
    site = remote.file("/etc/nginx/sites-available/sim-api")
    assert site.contains("ssl_certificate /etc/pki/sim/server.crt;")
    assert site.contains(r"ssl_protocols TLSv1\.2 TLSv1\.3;")
    assert not remote.file("/etc/nginx/sites-available/montecarlo").exists
    key = remote.file("/etc/pki/sim/server.key")
    assert (key.user, key.mode) == ("root", 0o600)
    ca_file = ca_paths(lab.fleet.settings).certificate
    assert tls_connects(lab.port(host, "https"), server_name=host, cafile=ca_file)
