"""The certificate module's decisions: validation of key and chain, issuing, and one run of each state."""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.tls_pki import TestCa, new_key, self_signed_without_san
from tests.unit.module_loader import library, module_utils

X = module_utils("preaudit_x509")
NAMES = ["sim-1", "montecarlo.lab"]
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


def test_a_fresh_self_signed_certificate_is_fit_for_its_names() -> None:
    key = X.new_private_key("ec")
    cert = X.self_signed(key, NAMES, NOW, 90)
    assert X.validate([cert], key, NAMES, NOW, renew_days=30, max_days=91) == []
    assert X.subject_alt_names(cert) == NAMES
    assert X.key_description(key) == "EC secp256r1"
    assert X.signature_hash(cert) == "sha256"
    assert X.self_issued(cert)
    assert X.not_after(cert) - X.not_before(cert) == timedelta(days=90)


def test_every_problem_is_named(ca: TestCa, tmp_path: Path) -> None:
    other_key = X.new_private_key("ec")
    expired = ca.issue("expired", NAMES, valid_days=(-90, -1))
    problems = X.validate([expired.certificate], other_key, [*NAMES, "api.lab"], NOW, renew_days=30)
    assert "the private key does not match the certificate" in problems
    assert any(p.startswith("expired on ") for p in problems)
    assert "subjectAltName lacks api.lab" in problems

    soon = ca.issue("soon", NAMES, valid_days=(-1, 10))
    assert any("within 30 days" in p for p in X.validate([soon.certificate], None, NAMES, NOW, 30))
    future = ca.issue("future", NAMES, valid_days=(2, 60))
    assert any(p.startswith("not valid before") for p in X.validate([future.certificate], None, NAMES, NOW, 0))
    long_lived = ca.issue("long", NAMES, valid_days=(-1, 800))
    assert "valid for 801 days, more than 366" in X.validate(
        [long_lived.certificate], None, NAMES, NOW, 0, max_days=366
    )

    no_san = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    assert "subjectAltName lacks montecarlo.lab" in X.validate([no_san.certificate], None, ["montecarlo.lab"], NOW, 0)


def test_key_size_curve_and_signature_hash(ca: TestCa) -> None:
    weak_rsa = ca.issue("rsa1024", NAMES, key_kind="rsa1024")
    assert "RSA key of 1024 bits, fewer than 2048" in X.validate([weak_rsa.certificate], None, NAMES, NOW, 0)
    p384 = ca.issue("p384", NAMES, key_kind="ec384")
    assert X.validate([p384.certificate], None, NAMES, NOW, 0) == []
    assert "EC key on curve secp384r1, not one of secp256r1" in X.validate(
        [p384.certificate], None, NAMES, NOW, 0, curves=["secp256r1"]
    )
    sha1 = ca.issue_sha1("sha1", NAMES)
    assert "the certificate signed with SHA1" in X.validate([sha1.certificate], None, NAMES, NOW, 0)


def test_chain_order_and_issuer(ca: TestCa, tmp_path: Path) -> None:
    leaf = ca.issue("leaf", NAMES).certificate
    assert X.validate([leaf, ca.certificate], None, NAMES, NOW, 0, ca=ca.certificate) == []
    assert X.validate([leaf], None, NAMES, NOW, 0, ca=ca.certificate) == []
    assert X.issued_by(leaf, ca.certificate) and not X.issued_by(ca.certificate, leaf)
    wrong_order = X.validate([ca.certificate, leaf], None, NAMES, NOW, 0)
    assert "chain order: certificate 0 is not issued by certificate 1" in wrong_order

    other = TestCa(tmp_path / "other")
    foreign = other.issue("foreign", NAMES).certificate
    problems = X.validate([foreign], None, NAMES, NOW, 0, ca=ca.certificate)
    assert problems == ["not issued by the CA CN=preaudit test CA"]
    # Same name, other key: the signature decides, not the issuer name.
    assert not X.issued_by(foreign, ca.certificate)
    assert "chain order: certificate 0 is not issued by certificate 1" in X.validate(
        [foreign, ca.certificate], None, NAMES, NOW, 0
    )


def test_wildcards_cover_one_label_only() -> None:
    key = X.new_private_key("ec")
    cert = X.self_signed(key, ["*.lab.example"], NOW, 30)
    assert X.missing_names(cert, ["api.lab.example", "API.LAB.EXAMPLE."]) == []
    assert X.missing_names(cert, ["lab.example", "a.b.lab.example"]) == ["lab.example", "a.b.lab.example"]


def test_issuing_uses_the_given_names_and_stays_within_the_ca(ca: TestCa) -> None:
    key = X.new_private_key("rsa", 3072)
    cert = X.issue(key.public_key(), ca.certificate, ca.key, NAMES, NOW, 365)
    assert X.subject_alt_names(cert) == NAMES
    assert X.validate([cert], key, NAMES, NOW, 30, min_rsa_bits=3072, ca=ca.certificate) == []
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # Never beyond the CA's own validity (the test CA lives 3650 days).
    long = X.issue(key.public_key(), ca.certificate, ca.key, NAMES, NOW, 10_000)
    assert X.not_after(long) <= X.not_after(ca.certificate)


def test_issuing_refuses_a_mismatched_ca_key_and_an_unreadable_public_key(ca: TestCa) -> None:
    public = X.new_private_key("ec").public_key()
    with pytest.raises(X.CertificateError, match="CA key does not match"):
        X.issue(public, ca.certificate, new_key("ec256"), NAMES, NOW, 30)
    with pytest.raises(X.CertificateError, match="unreadable public key"):
        X.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert X.key_description(X.load_public_key(pem)) == "EC secp256r1"


def test_readers_reject_what_is_not_a_key_or_certificate(tmp_path: Path) -> None:
    with pytest.raises(X.CertificateError, match="no PEM certificate"):
        X.load_certificates(b"hello")
    with pytest.raises(X.CertificateError, match="unreadable private key"):
        X.load_private_key(b"not a key")
    with pytest.raises(X.CertificateError, match="unsupported key type dsa"):
        X.new_private_key("dsa")
    with pytest.raises(X.CertificateError, match="at least 2048"):
        X.new_private_key("rsa", 1024)
    with pytest.raises(X.CertificateError, match="unsupported curve"):
        X.new_private_key("ec", curve="brainpool")
    assert isinstance(X.new_private_key("ec", curve="secp384r1"), ec.EllipticCurvePrivateKey)
    assert isinstance(X.new_private_key("rsa", 3072), rsa.RSAPrivateKey)
    assert X.wanted_key_description("rsa", 3072, "secp256r1") == "RSA 3072"


# -- the module's states, run in-process --------------------------------------------------------


class FakeModule:
    def __init__(self, params: dict[str, Any], check_mode: bool = False) -> None:
        defaults = {
            "renew_days": 30, "max_days": 366, "min_rsa_bits": 2048, "curves": ["secp256r1", "secp384r1"],
            "ca_certificate_path": None, "ca_private_key_path": None, "ca_private_key_passphrase": None,
            "inspected": {}, "issued": {}, "state": "present",
        }  # fmt: skip
        self.params = {**defaults, **params}
        self.check_mode = check_mode

    def fail_json(self, **kwargs: Any) -> None:
        raise AssertionError(kwargs["msg"])

    def get_bin_path(self, name: str) -> str | None:
        return shutil.which(name)


M = library("x509_certificate", uses=("preaudit_keyfile", "preaudit_x509"))


def _spec(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **M.CERT_DEFAULTS,
        "name": "web",
        "certificate": str(tmp_path / "tls" / "web.crt"),
        "private_key": str(tmp_path / "tls" / "web.key"),
        "names": NAMES,
        **extra,
    }


def _ca_params(ca: TestCa, key_path: Path | None = None) -> dict[str, Any]:
    return {"ca_certificate_path": str(ca.ca_file), "ca_private_key_path": str(key_path or ca.directory / "ca.key")}


def _host_then_controller(
    spec: dict[str, Any], ca: TestCa, check_mode: bool = False, key_path: Path | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """state=inspect on the host, then state=judge on the controller with what the host returned."""
    seen = M.inspect(FakeModule({"state": "inspect"}, check_mode), spec)
    controller = FakeModule({"state": "judge", **_ca_params(ca, key_path)}, check_mode)
    judged = M.judge(controller, spec, seen, M.Issuer(controller), NOW)
    return seen, judged


def test_self_signed_is_created_once_and_the_key_is_kept(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    check = M.present(FakeModule({}, check_mode=True), spec, NOW)
    assert check["changed"] and check["action"] == "selfsigned"
    assert not (tmp_path / "tls").exists()

    first = M.present(FakeModule({}), spec, NOW)
    assert first["changed"] and first["key_created"] and first["action"] == "selfsigned"
    key_file = tmp_path / "tls" / "web.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_before = key_file.read_bytes()

    again = M.present(FakeModule({}), spec, NOW)
    assert not again["changed"] and again["action"] == "unchanged" and again["reasons"] == []

    forced = M.present(FakeModule({}), {**spec, "force": True}, NOW)
    assert forced["action"] == "selfsigned" and key_file.read_bytes() == key_before

    key_file.chmod(0o644)
    fixed = M.present(FakeModule({}), spec, NOW)
    assert fixed["changed"] and fixed["action"] == "unchanged"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_key_of_the_wrong_type_is_replaced(tmp_path: Path) -> None:
    no_san = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    spec = _spec(tmp_path, certificate=str(no_san.cert_file), private_key=str(no_san.key_file))
    result = M.present(FakeModule({}), spec, NOW)
    assert "key is RSA 2048, wanted EC secp256r1" in result["reasons"]
    assert result["key_created"] and result["key"] == "EC secp256r1"
    key = X.load_private_key(no_san.key_file.read_bytes())
    assert X.key_matches(key, X.load_certificates(no_san.cert_file.read_bytes())[0])


def test_the_ca_issues_for_the_key_the_host_made_and_the_host_installs_it(ca: TestCa, tmp_path: Path) -> None:
    spec = _spec(tmp_path, provider="ca")
    seen, judged = _host_then_controller(spec, ca)
    assert seen["key_created"] and "PRIVATE" not in json.dumps(seen)
    assert judged["action"] == "issued" and judged["reasons"] == [
        "no private key",
        f"no certificate at {spec['certificate']}",
    ]
    issued = X.load_certificates(judged["issued"].encode())
    assert len(issued) == 1  # the CA is a root: clients have it, the chain is the leaf
    public = X.load_public_key(seen["public_key"].encode())
    assert X.validate(issued, public, NAMES, NOW, 30, ca=ca.certificate) == []
    assert judged["names"] == NAMES and judged["issuer"] == "CN=preaudit test CA" and not judged["self_signed"]

    installed = M.install(FakeModule({"state": "install"}), spec, judged["issued"])
    assert installed["changed"] and installed["action"] == "installed"
    cert_file = Path(spec["certificate"])
    assert stat.S_IMODE(cert_file.stat().st_mode) == 0o644
    key = X.load_private_key(Path(spec["private_key"]).read_bytes())
    assert X.key_matches(key, X.load_certificates(cert_file.read_bytes())[0])
    assert M.install(FakeModule({"state": "install"}), spec, judged["issued"])["changed"] is False

    # A converged host: nothing is issued, and the CA key is not even read.
    seen, again = _host_then_controller(spec, ca, key_path=tmp_path / "no-such-ca.key")
    assert not seen["changed"] and again["action"] == "unchanged" and again["reasons"] == []
    assert again["not_after"] == judged["not_after"]


def test_the_controller_renews_what_is_not_fit_and_keeps_the_key(ca: TestCa, tmp_path: Path) -> None:
    other = TestCa(tmp_path / "other")
    spec = _spec(tmp_path, provider="ca")
    seen, judged = _host_then_controller(spec, ca)
    M.install(FakeModule({"state": "install"}), spec, judged["issued"])
    key_before = Path(spec["private_key"]).read_bytes()
    public = X.load_public_key(seen["public_key"].encode())
    foreign = X.issue(public, other.certificate, other.key, NAMES[:1], NOW - timedelta(days=350), 365)
    Path(spec["certificate"]).write_bytes(X.certificate_pem(foreign))

    seen, judged = _host_then_controller(spec, ca)
    assert not seen["key_created"]
    assert "subjectAltName lacks montecarlo.lab" in judged["reasons"]
    assert "not issued by the CA CN=preaudit test CA" in judged["reasons"]
    assert any("within 30 days" in r for r in judged["reasons"])
    assert judged["action"] == "issued"
    M.install(FakeModule({"state": "install"}), spec, judged["issued"])
    assert Path(spec["private_key"]).read_bytes() == key_before

    forced = M.judge(
        FakeModule({"state": "judge", **_ca_params(ca)}), {**spec, "force": True},
        M.inspect(FakeModule({"state": "inspect"}), spec), M.Issuer(FakeModule(_ca_params(ca))), NOW,
    )  # fmt: skip
    assert forced["reasons"] == ["renewal forced"] and forced["action"] == "issued"


def test_check_mode_judges_without_a_key_and_writes_nothing(ca: TestCa, tmp_path: Path) -> None:
    legacy = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    legacy.key_file.chmod(0o644)  # as the lab image ships it
    before = {p: (p.read_bytes(), p.stat().st_mode) for p in (legacy.key_file, legacy.cert_file)}
    spec = _spec(tmp_path, provider="ca", certificate=str(legacy.cert_file), private_key=str(legacy.key_file))
    seen, judged = _host_then_controller(spec, ca, check_mode=True)
    assert seen["changed"] and seen["key_created"] and "public_key" not in seen
    assert "key is RSA 2048, wanted EC secp256r1" in judged["reasons"]
    assert judged["action"] == "issued" and "issued" not in judged
    assert {p: (p.read_bytes(), p.stat().st_mode) for p in before} == before

    fresh = _spec(tmp_path / "fresh", provider="ca")
    seen, judged = _host_then_controller(fresh, ca, check_mode=True)
    assert seen["key_created"] and judged["action"] == "issued"
    assert not (tmp_path / "fresh").exists()


def test_install_refuses_a_certificate_for_another_key(ca: TestCa, tmp_path: Path) -> None:
    spec = _spec(tmp_path, provider="ca")
    M.inspect(FakeModule({"state": "inspect"}), spec)
    other = X.issue(X.new_private_key("ec").public_key(), ca.certificate, ca.key, NAMES, NOW, 30)
    with pytest.raises(AssertionError, match="refusing to install the issued certificate"):
        M.install(FakeModule({"state": "install"}), spec, X.certificate_pem(other).decode())
    assert not Path(spec["certificate"]).exists()
    with pytest.raises(AssertionError, match="no private key"):
        M.install(FakeModule({"state": "install"}), _spec(tmp_path / "none"), X.certificate_pem(other).decode())


def test_a_supplied_certificate_is_judged_never_changed(ca: TestCa, tmp_path: Path) -> None:
    pair = ca.issue("supplied", ["other.example"], valid_days=(-1, 20))
    before = (pair.cert_file.read_bytes(), pair.key_file.read_bytes())
    spec = _spec(tmp_path, provider="supplied", certificate=str(pair.cert_file), private_key=str(pair.key_file))
    # On the controller (no package on the host) ...
    seen, judged = _host_then_controller(spec, ca)
    assert judged["action"] == "invalid" and "issued" not in judged and not seen["key_created"]
    assert "subjectAltName lacks sim-1, montecarlo.lab" in judged["reasons"]
    assert any("within 30 days" in r for r in judged["reasons"])
    # ... and on the host with cryptography: the same verdict.
    result = M.present(FakeModule({}), spec, NOW)
    assert result["action"] == "invalid" and set(judged["reasons"]) == set(result["reasons"])
    assert (pair.cert_file.read_bytes(), pair.key_file.read_bytes()) == before

    missing = _spec(tmp_path / "none", provider="supplied")
    seen, judged = _host_then_controller(missing, ca)
    assert judged["action"] == "invalid" and not seen["key_created"]
    assert f"no private key at {missing['private_key']}" in judged["reasons"]
    assert not os.path.exists(tmp_path / "none")


def test_each_state_takes_only_the_providers_it_can_serve(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="state=present handles providers selfsigned, supplied, not ca"):
        M.checked_spec(FakeModule({"state": "present"}), _spec(tmp_path, provider="ca"))
    with pytest.raises(AssertionError, match="state=judge handles providers ca, supplied, not selfsigned"):
        M.checked_spec(FakeModule({"state": "judge"}), _spec(tmp_path))
    with pytest.raises(AssertionError, match="names is required"):
        M.checked_spec(FakeModule({"state": "inspect"}), _spec(tmp_path, names=[]))
