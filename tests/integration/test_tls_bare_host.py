"""tls_hardening on a host that has neither python3-cryptography nor openssl, as a minimal Debian
host: the host makes its key with ssh-keygen, the lab CA issues the certificate on the controller,
nginx serves it, nothing is installed for it, a re-run changes nothing, and check mode on such a
host without a key yet changes nothing either. One host, three runs of tls.yml."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from scanners.ansible_run import RunResult
from scanners.lab.ca import ca_paths
from tests.integration.conftest import Lab
from tests.integration.hardening_support import CERT_FILE, KEY_FILE, SITE_FILE, changed_tasks, snapshot, tls_connects

pytestmark = pytest.mark.lab

# openssl's purge takes ca-certificates with it (its only dependant on the lab image). The lab
# image's offline apt source still holds python3-cryptography: the role could install it, and must not.
PURGED = ("python3-cryptography", "openssl")
WATCHED = [KEY_FILE, CERT_FILE, SITE_FILE, "/etc/nginx/nginx.conf"]


@dataclass
class BareHost:
    name: str
    before_check: dict[str, str]
    after_check: dict[str, str]
    check: RunResult
    first: RunResult
    second: RunResult
    installed_after: dict[str, bool]
    key_file: tuple[int, str, str]
    key_public_pem: str
    served: x509.Certificate
    verified: dict[str, bool]


@pytest.fixture(scope="module")
def bare_host(lab: Lab) -> Iterator[BareHost]:
    name = lab.names[-1]
    lab.reset(name)
    try:
        # No key and no certificate yet either: the role starts from nothing on this host.
        purge = lab.root_run(name, f"apt-get purge -y -q {' '.join(PURGED)} && rm -f {KEY_FILE} {CERT_FILE}")
        assert purge.returncode == 0, purge.stdout[-2000:] + purge.stderr[-2000:]
        before = snapshot(lab, name, WATCHED)
        check = lab.playbook("tls.yml", limit=name, check=True, diff=True)
        after = snapshot(lab, name, WATCHED)
        first = lab.playbook("tls.yml", limit=name)
        second = lab.playbook("tls.yml", limit=name)

        host = lab.host(name)
        key = host.file(KEY_FILE)
        port = lab.port(name, "https")
        ca_file = ca_paths(lab.fleet.settings).certificate
        yield BareHost(
            name=name,
            before_check=before,
            after_check=after,
            check=check,
            first=first,
            second=second,
            installed_after={package: host.package(package).is_installed for package in PURGED},
            key_file=(key.mode, key.user, key.group),
            # What ssh-keygen on the host says the key's public key is: independent of the role's reading.
            key_public_pem=host.check_output(f"ssh-keygen -e -m PKCS8 -f {KEY_FILE}"),
            served=x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode()),
            verified={n: tls_connects(port, server_name=n, cafile=ca_file) for n in (name, "montecarlo.lab")},
        )
    finally:
        lab.reset(name)


def test_check_mode_on_a_host_without_packages_or_key_changes_nothing(bare_host: BareHost) -> None:
    run = bare_host.check
    assert run.rc == 0 and run.total("failures") == 0, run.stdout[-3000:]
    assert run.total("changed") > 0  # it reports the key it would make and the files it would write
    assert bare_host.before_check[KEY_FILE] == bare_host.before_check[CERT_FILE] == "absent"
    assert bare_host.after_check == bare_host.before_check
    assert "not_checked" not in run.stdout  # the certificate was judged, with nothing installed on the host


def test_the_host_makes_its_key_and_the_lab_ca_issues_its_certificate(lab: Lab, bare_host: BareHost) -> None:
    run = bare_host.first
    assert run.rc == 0 and run.total("failures") == 0, run.stdout[-3000:]
    assert '"action": "failed"' not in run.stdout
    assert bare_host.key_file == (0o600, "root", "root")
    ca = x509.load_pem_x509_certificate(ca_paths(lab.fleet.settings).certificate.read_bytes())
    cert = bare_host.served
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {bare_host.name, "montecarlo.lab"}
    served_public = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert served_public.decode() == bare_host.key_public_pem.strip() + "\n"
    assert bare_host.verified == {bare_host.name: True, "montecarlo.lab": True}


def test_nothing_is_installed_for_the_certificates(bare_host: BareHost) -> None:
    assert bare_host.installed_after == {package: False for package in PURGED}


def test_a_second_run_changes_nothing(bare_host: BareHost) -> None:
    run = bare_host.second
    assert run.rc == 0 and run.total("failures") == 0, run.stdout[-3000:]
    assert changed_tasks(run, ["tls_hardening"]) == [] and run.total("changed") == 0
