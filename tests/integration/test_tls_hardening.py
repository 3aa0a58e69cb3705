"""tls_hardening on the lab fleet: real TLS clients (sslyze through the TLS scanner, and Python's
ssl) against the hardened nginx, the certificate from the lab CA, the platform still answering,
idempotence, check mode, and a configuration nginx refuses being put back."""

from __future__ import annotations

import hashlib
import json
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from scanners.ansible_run import RunResult
from scanners.catalog import default_catalog
from scanners.findings import Finding
from scanners.lab.ca import ca_paths
from scanners.scanning import ScanContext, TlsEndpoint
from scanners.tls import scan_tls
from tests.integration.conftest import Converged, Lab
from tests.integration.hardening_support import (
    CERT_FILE,
    ENV_FILE,
    KEY_FILE,
    SITE_FILE,
    changed_tasks,
    env_values,
    response_head,
    snapshot,
    tls_connects,
)

pytestmark = pytest.mark.lab

# Each control of the role and the test that proves it on hardened hosts, with an assertion the
# unhardened image fails (see test_the_image_fails_what_the_role_fixes for the image side).
CONTROL_TESTS = {
    "TLS-001": "test_only_tls12_and_tls13_are_accepted",
    "TLS-002": "test_weak_cipher_suites_and_rsa_key_exchange_are_refused",
    "TLS-003": "test_the_scan_passes_every_tls_control",
    "TLS-004": "test_hsts_security_headers_and_no_version",
    "TLS-005": "test_the_certificate_comes_from_the_lab_ca_for_the_host_names",
    "TLS-006": "test_the_certificate_comes_from_the_lab_ca_for_the_host_names",
    "TLS-007": "test_the_certificate_comes_from_the_lab_ca_for_the_host_names",
    "TLS-008": "test_the_certificate_comes_from_the_lab_ca_for_the_host_names",
    "TLS-009": "test_openssl_options_nginx_defaults_and_plain_http_redirect",
    "TLS-010": "test_openssl_options_nginx_defaults_and_plain_http_redirect",
    "TLS-012": "test_weak_cipher_suites_and_rsa_key_exchange_are_refused",
    "TLS-013": "test_the_scan_passes_every_tls_control",
    "TLS-014": "test_only_tls12_and_tls13_are_accepted",
    "TLS-015": "test_hsts_security_headers_and_no_version",
    "TLS-016": "test_hsts_security_headers_and_no_version",
}
# The controls the unhardened image fails as the TLS scanner sees it.
IMAGE_FAILS = {"TLS-001", "TLS-002", "TLS-003", "TLS-004", "TLS-006", "TLS-015", "TLS-016"}


def test_every_role_control_has_references_and_a_test() -> None:
    role_controls = {c.id: c for c in default_catalog() if c.role == "tls_hardening"}
    assert set(CONTROL_TESTS) == set(role_controls)
    for control_id, test_name in CONTROL_TESTS.items():
        references = role_controls[control_id].references
        assert {"CC6.1", "CC6.7"} & set(references["soc2"]), control_id
        assert {"A.8.24"} & set(references["iso27001"]) or control_id in ("TLS-015", "TLS-016"), control_id
        assert callable(getattr(sys.modules[__name__], test_name)), test_name


def _scan(
    lab: Lab, hosts: list[str], server_name: str | None = None, profile: str = "intermediate"
) -> dict[str, dict[str, Finding]]:
    found: list[Finding] = []
    endpoints = [
        TlsEndpoint(address="127.0.0.1", port=lab.port(h, "https"), server_name=server_name or h, host=h) for h in hosts
    ]
    scan_tls(
        ScanContext(default_catalog(), emit=found.append),
        endpoints,
        timeout=15.0,
        ca_file=ca_paths(lab.fleet.settings).certificate,
        profile=profile,
    )
    by_host: dict[str, dict[str, Finding]] = {h: {} for h in hosts}
    for finding in found:
        by_host[finding.resource.host or ""][finding.control_id] = finding
    return by_host


def test_the_scan_passes_every_tls_control(lab: Lab, converged: Converged) -> None:
    for server_name in ("montecarlo.lab", None):  # the platform name, and each host's own name
        for host, findings in _scan(lab, converged.hosts, server_name).items():
            statuses = {cid: f.status.value for cid, f in findings.items()}
            expected = {cid: "pass" for cid in statuses}
            expected["TLS-013"] = "not_applicable"  # the lab CA names no OCSP responder
            assert statuses == expected, (host, server_name, {c: f.message for c, f in findings.items()})


def test_only_tls12_and_tls13_are_accepted(lab: Lab, converged: Converged) -> None:
    for host in converged.hosts:
        port = lab.port(host, "https")
        legacy = "ALL:@SECLEVEL=0"
        assert not tls_connects(port, version=ssl.TLSVersion.TLSv1, ciphers=legacy)
        assert not tls_connects(port, version=ssl.TLSVersion.TLSv1_1, ciphers=legacy)
        assert tls_connects(port, version=ssl.TLSVersion.TLSv1_2)
        assert tls_connects(port, version=ssl.TLSVersion.TLSv1_3)


@pytest.mark.parametrize(
    "suite",
    ["AES128-GCM-SHA256", "AES256-SHA", "AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"],
)
def test_weak_cipher_suites_and_rsa_key_exchange_are_refused(lab: Lab, converged: Converged, suite: str) -> None:
    for host in converged.hosts:
        port = lab.port(host, "https")
        assert not tls_connects(port, version=ssl.TLSVersion.TLSv1_2, ciphers=f"{suite}:@SECLEVEL=0")
        assert tls_connects(port, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")


def test_hsts_security_headers_and_no_version(lab: Lab, converged: Converged) -> None:
    for host in converged.hosts:
        head = response_head(lab.port(host, "https"))
        assert head[":status"].endswith("200 OK")
        hsts = dict(part.strip().partition("=")[::2] for part in head["strict-transport-security"].split(";"))
        assert int(hsts["max-age"]) >= 63072000
        assert head["x-content-type-options"] == "nosniff"
        assert head["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in head["content-security-policy"]
        assert head["referrer-policy"] == "no-referrer"
        assert head["server"] == "nginx"
        # `always`: error responses carry them too.
        assert "strict-transport-security" in response_head(lab.port(host, "https"), "/simulate/pi")


def test_the_certificate_comes_from_the_lab_ca_for_the_host_names(lab: Lab, converged: Converged) -> None:
    ca = ca_paths(lab.fleet.settings)
    ca_cert = x509.load_pem_x509_certificate(ca.certificate.read_bytes())
    for host in converged.hosts:
        port = lab.port(host, "https")
        for name in (host, "montecarlo.lab"):
            assert tls_connects(port, server_name=name, cafile=ca.certificate), name
        assert not tls_connects(port, server_name="other.example", cafile=ca.certificate)

        pem = ssl.get_server_certificate(("127.0.0.1", port))
        cert = x509.load_pem_x509_certificate(pem.encode())
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
        assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
        assert cert.issuer == ca_cert.subject
        lifespan = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert timedelta(days=300) < lifespan <= timedelta(days=366)

        files = lab.host(host)
        key = files.file(KEY_FILE)
        assert (key.mode, key.user, key.group) == (0o600, "root", "root")
        assert files.file(CERT_FILE).mode == 0o644
        # The CA key never reaches a host: no small file there has its content.
        ca_key_digest = hashlib.sha256(ca.private_key.read_bytes()).hexdigest()
        sums = files.run(
            "find /etc /opt /root /home /srv /tmp /var/tmp /var/backups -xdev -type f -size -8k -print0 2>/dev/null"
            " | xargs -0 -r sha256sum | cut -d' ' -f1"
        ).stdout.split()
        assert sums and ca_key_digest not in sums


def test_openssl_options_nginx_defaults_and_plain_http_redirect(lab: Lab, converged: Converged) -> None:
    for host in converged.hosts:
        files = lab.host(host)
        site = files.file(SITE_FILE).content_string
        assert "ssl_conf_command Options -Compression,NoRenegotiation;" in site
        assert "ssl_session_tickets off;" in site
        nginx_conf = files.file("/etc/nginx/nginx.conf").content_string
        assert "\tssl_protocols TLSv1.2 TLSv1.3; # preaudit TLS-001" in nginx_conf
        assert "\tserver_tokens off; # preaudit TLS-016" in nginx_conf
        assert files.run("nginx -t").rc == 0
        redirect = files.check_output(
            'python3 -c \'import http.client as h; c = h.HTTPConnection("127.0.0.1", 80, timeout=5); '
            'c.request("GET", "/health", headers={"Host": "montecarlo.lab"}); r = c.getresponse(); '
            'print(r.status, r.getheader("Location"), r.getheader("Server"))\''
        )
        assert redirect == "301 https://montecarlo.lab/health nginx"


def test_the_platform_still_answers_through_nginx(lab: Lab, converged: Converged) -> None:
    for host in converged.hosts:
        status, body = lab.https_get(host, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        api_key = env_values(lab, host)["API_KEY"]
        status, _body = lab.https_get(host, "/simulate/pi?samples=1000&seed=3", {"X-API-Key": api_key})
        assert status == 200


def test_converging_again_changes_nothing(converged: Converged) -> None:
    assert converged.first.rc == 0 and converged.first.total("failures") == 0, converged.first.stdout[-3000:]
    assert converged.second.rc == 0 and converged.second.total("failures") == 0
    assert changed_tasks(converged.second) == []
    assert changed_tasks(converged.first, ["tls_hardening"])  # the first run did change the hosts


# -- a fresh host: the image as shipped, check mode, and a configuration nginx refuses ------------


@dataclass
class FreshTls:
    name: str
    image_scan: dict[str, Finding]
    image_clients: dict[str, bool]
    before_check: dict[str, str]
    after_check: dict[str, str]
    check: list[RunResult]
    crypto_after_check: bool
    refused: RunResult
    after_refused: dict[str, str]
    health_after_refused: int
    applied: RunResult
    applied_scan: dict[str, Finding]
    modern: RunResult
    modern_scan: dict[str, Finding]
    modern_clients: dict[str, bool]
    modern_lifespan_days: int


WATCHED = [SITE_FILE, "/etc/nginx/nginx.conf", KEY_FILE, CERT_FILE, ENV_FILE, "/etc/nginx/sites-enabled/montecarlo"]


@pytest.fixture(scope="module")
def fresh_tls(lab: Lab) -> Iterator[FreshTls]:
    name = lab.names[-1]
    lab.fleet.reset_host(name)
    port = lab.port(name, "https")
    image_scan = _scan(lab, [name], "montecarlo.lab")[name]
    legacy = "ALL:@SECLEVEL=0"
    image_clients = {
        "tls1.0": tls_connects(port, version=ssl.TLSVersion.TLSv1, ciphers=legacy),
        "rsa-kex": tls_connects(port, version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256:@SECLEVEL=0"),
        "lab-ca": tls_connects(port, server_name="montecarlo.lab", cafile=ca_paths(lab.fleet.settings).certificate),
    }
    before = snapshot(lab, name, WATCHED)
    # The playbooks of the two roles (site.yml's os_hardening cannot run in check mode on a fresh host:
    # the services its packages would install do not exist yet).
    check = [lab.playbook(pb, limit=name, check=True, diff=True) for pb in ("tls.yml", "secrets.yml")]
    after = snapshot(lab, name, WATCHED)
    crypto_after_check = lab.host(name).package("python3-cryptography").is_installed
    bogus: dict[str, Any] = {
        "tls_hardening_endpoints": [
            {
                "name": "montecarlo",
                "server_names": ["montecarlo.lab"],
                "default_server": True,
                "upstream": "http://127.0.0.1:8000",
                "certificate": CERT_FILE,
                "private_key": KEY_FILE,
                "extra_directives": ["preaudit_no_such_directive on;"],
            }
        ]
    }
    refused = lab.playbook("tls.yml", limit=name, extravars=bogus)
    after_refused = snapshot(lab, name, [SITE_FILE, "/etc/nginx/nginx.conf"])
    health, _body = lab.https_get(name, "/health")
    applied = lab.playbook("tls.yml", limit=name)
    applied_scan = _scan(lab, [name], "montecarlo.lab")[name]
    modern = lab.playbook("tls.yml", limit=name, extravars={"tls_hardening_profile": "modern"})
    modern_scan = _scan(lab, [name], "montecarlo.lab", profile="modern")[name]
    modern_clients = {
        "tls1.2": tls_connects(port, version=ssl.TLSVersion.TLSv1_2),
        "tls1.3": tls_connects(port, version=ssl.TLSVersion.TLSv1_3),
    }
    cert = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())
    lifespan = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    yield FreshTls(
        name, image_scan, image_clients, before, after, check, crypto_after_check, refused, after_refused, health,
        applied, applied_scan, modern, modern_scan, modern_clients, lifespan,
    )  # fmt: skip


def test_the_image_fails_what_the_role_fixes(fresh_tls: FreshTls) -> None:
    failing = {cid for cid, f in fresh_tls.image_scan.items() if f.status.value == "fail"}
    assert failing == IMAGE_FAILS
    assert fresh_tls.image_clients == {"tls1.0": True, "rsa-kex": True, "lab-ca": False}
    assert fresh_tls.before_check[KEY_FILE].startswith("644 root:root")


def test_check_mode_on_a_fresh_host_changes_nothing(fresh_tls: FreshTls) -> None:
    tls, secrets = fresh_tls.check
    for run in (tls, secrets):
        assert run.rc == 0 and run.total("failures") == 0, run.stdout[-3000:]
        assert run.total("changed") > 0  # it reports what it would change
    assert fresh_tls.after_check == fresh_tls.before_check
    assert not fresh_tls.crypto_after_check
    # The lab CA's certificates are judged in check mode too: nothing on the host is needed for that.
    assert "not_checked" not in tls.stdout
    assert "/etc/nginx/sites-available/montecarlo" in tls.stdout  # the diff of the site it would write
    assert "would get new values: JWT_SECRET" in secrets.stdout


def test_a_configuration_nginx_refuses_is_replaced_by_the_previous_one(fresh_tls: FreshTls) -> None:
    refused = fresh_tls.refused
    assert refused.rc != 0
    assert "nginx -t refused the new configuration" in refused.stdout
    assert "preaudit_no_such_directive" in refused.stdout
    assert "The previous configuration was restored." in refused.stdout
    assert fresh_tls.after_refused[SITE_FILE] == fresh_tls.before_check[SITE_FILE]
    assert fresh_tls.after_refused["/etc/nginx/nginx.conf"] == fresh_tls.before_check["/etc/nginx/nginx.conf"]
    assert fresh_tls.health_after_refused == 200
    # The next run with a valid configuration applies it in full.
    assert fresh_tls.applied.rc == 0, fresh_tls.applied.stdout[-3000:]
    passed = {cid for cid, f in fresh_tls.applied_scan.items() if f.status.value == "pass"}
    assert passed >= IMAGE_FAILS


def test_the_modern_profile_serves_tls13_only_with_a_90_day_certificate(fresh_tls: FreshTls) -> None:
    assert fresh_tls.modern.rc == 0, fresh_tls.modern.stdout[-3000:]
    statuses = {cid: f.status.value for cid, f in fresh_tls.modern_scan.items()}
    not_applicable = {cid for cid, status in statuses.items() if status == "not_applicable"}
    assert not_applicable == {"TLS-009", "TLS-010", "TLS-013", "TLS-014"}  # no TLS 1.2, no OCSP responder
    assert {cid for cid, status in statuses.items() if status != "not_applicable"} == {
        cid for cid, status in statuses.items() if status == "pass"
    }, {cid: f.message for cid, f in fresh_tls.modern_scan.items()}
    assert fresh_tls.modern_clients == {"tls1.2": False, "tls1.3": True}
    assert fresh_tls.modern_lifespan_days == 90
