"""The certificate module's decisions: validation of key and chain, issuing, and one run of each state."""

from __future__ import annotations

import os
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


def test_signing_uses_the_given_names_and_stays_within_the_ca(ca: TestCa) -> None:
    key = X.new_private_key("rsa", 3072)
    csr = X.build_csr(key, ["evil.example"])
    cert = X.sign_csr(csr, ca.certificate, ca.key, NAMES, NOW, 365)
    assert X.subject_alt_names(cert) == NAMES
    assert X.validate([cert], key, NAMES, NOW, 30, min_rsa_bits=3072, ca=ca.certificate) == []
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # Never beyond the CA's own validity (the test CA lives 3650 days).
    long = X.sign_csr(csr, ca.certificate, ca.key, NAMES, NOW, 10_000)
    assert X.not_after(long) <= X.not_after(ca.certificate)


def test_signing_refuses_a_forged_request_and_a_mismatched_ca_key(ca: TestCa) -> None:
    key = X.new_private_key("ec")
    csr = X.build_csr(key, NAMES)
    with pytest.raises(X.CertificateError, match="CA key does not match"):
        X.sign_csr(csr, ca.certificate, new_key("ec256"), NAMES, NOW, 30)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    forged = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(X.CertificateError, match="signature is invalid"):
        X.sign_csr(forged, ca.certificate, ca.key, NAMES, NOW, 30)


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
        defaults = {"renew_days": 30, "max_days": 366, "min_rsa_bits": 2048, "curves": ["secp256r1", "secp384r1"]}
        self.params = {**defaults, **params}
        self.check_mode = check_mode

    def fail_json(self, **kwargs: Any) -> None:
        raise AssertionError(kwargs["msg"])


M = library("x509_certificate", uses=("preaudit_x509",))


def _spec(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **M.CERT_DEFAULTS,
        "name": "web",
        "certificate": str(tmp_path / "tls" / "web.crt"),
        "private_key": str(tmp_path / "tls" / "web.key"),
        "names": NAMES,
        **extra,
    }


def test_self_signed_is_created_once_and_the_key_is_kept(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    check = M.present(FakeModule({}, check_mode=True), spec, None, NOW)
    assert check["changed"] and check["action"] == "selfsigned"
    assert not (tmp_path / "tls").exists()

    first = M.present(FakeModule({}), spec, None, NOW)
    assert first["changed"] and first["key_created"] and first["action"] == "selfsigned"
    key_file = tmp_path / "tls" / "web.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_before = key_file.read_bytes()

    again = M.present(FakeModule({}), spec, None, NOW)
    assert not again["changed"] and again["action"] == "unchanged" and again["reasons"] == []

    forced = M.present(FakeModule({}), {**spec, "force": True}, None, NOW)
    assert forced["action"] == "selfsigned" and key_file.read_bytes() == key_before

    key_file.chmod(0o644)
    fixed = M.present(FakeModule({}), spec, None, NOW)
    assert fixed["changed"] and fixed["action"] == "unchanged"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_key_of_the_wrong_type_is_replaced(tmp_path: Path) -> None:
    no_san = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    spec = _spec(tmp_path, certificate=str(no_san.cert_file), private_key=str(no_san.key_file))
    result = M.present(FakeModule({}), spec, None, NOW)
    assert "key is RSA 2048, wanted EC secp256r1" in result["reasons"]
    assert result["key_created"] and result["key"] == "EC secp256r1"
    key = X.load_private_key(no_san.key_file.read_bytes())
    assert X.key_matches(key, X.load_certificates(no_san.cert_file.read_bytes())[0])


def test_ca_flow_request_sign_install(ca: TestCa, tmp_path: Path) -> None:
    ca_pem = ca.certificate.public_bytes(serialization.Encoding.PEM).decode()
    spec = _spec(tmp_path, provider="ca")
    first = M.present(FakeModule({"ca_certificate": ca_pem}), spec, ca.certificate, NOW)
    assert first["action"] == "request" and "BEGIN CERTIFICATE REQUEST" in first["request"]
    assert "request" not in M.present(
        FakeModule({}, check_mode=True), _spec(tmp_path / "x", provider="ca"), ca.certificate, NOW
    )

    signer = FakeModule({"ca_certificate_path": str(ca.ca_file), "ca_private_key_path": str(ca.directory / "ca.key"),
                         "ca_private_key_passphrase": None})  # fmt: skip
    signed = M.sign(signer, spec, first["request"], NOW)
    installed = M.install(FakeModule({}), spec, signed["certificate"], ca.certificate)
    assert installed["changed"] and installed["action"] == "installed"
    assert M.install(FakeModule({}), spec, signed["certificate"], ca.certificate)["changed"] is False

    again = M.present(FakeModule({}), spec, ca.certificate, NOW)
    assert again["action"] == "unchanged", again["reasons"]

    with pytest.raises(AssertionError, match="refusing to install"):
        other = X.sign_csr(X.build_csr(X.new_private_key("ec"), NAMES), ca.certificate, ca.key, NAMES, NOW, 30)
        M.install(FakeModule({}), spec, X.certificate_pem(other).decode(), ca.certificate)


def test_a_supplied_certificate_is_judged_never_changed(ca: TestCa, tmp_path: Path) -> None:
    pair = ca.issue("supplied", ["other.example"], valid_days=(-1, 20))
    before = pair.cert_file.read_bytes()
    spec = _spec(tmp_path, provider="supplied", certificate=str(pair.cert_file), private_key=str(pair.key_file))
    result = M.present(FakeModule({}), spec, None, NOW)
    assert result["action"] == "invalid"
    assert "subjectAltName lacks sim-1, montecarlo.lab" in result["reasons"]
    assert any("within 30 days" in r for r in result["reasons"])
    assert pair.cert_file.read_bytes() == before

    missing = M.present(FakeModule({}), _spec(tmp_path / "none", provider="supplied"), None, NOW)
    assert missing["action"] == "invalid" and not missing["key_created"]
    assert not os.path.exists(tmp_path / "none")
