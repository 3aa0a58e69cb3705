"""Each TLS check on hand-built sslyze results: the baseline passes, and each change fails exactly its control.

These cover what no real test server can show (Heartbleed, ROBOT, compression, insecure
renegotiation, a revoked staple, MD5...); tests/integration/test_tls_scanner.py covers real servers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.x509 import ocsp
from sslyze.plugins.compression_plugin import CompressionScanResult
from sslyze.plugins.elliptic_curves_plugin import EllipticCurve, SupportedEllipticCurvesScanResult
from sslyze.plugins.ems_extension_plugin import EmsExtensionScanResult
from sslyze.plugins.fallback_scsv_plugin import FallbackScsvScanResult
from sslyze.plugins.heartbleed_plugin import HeartbleedScanResult
from sslyze.plugins.openssl_ccs_injection_plugin import OpenSslCcsInjectionScanResult
from sslyze.plugins.robot._robot_tester import RobotScanResultEnum
from sslyze.plugins.robot.implementation import RobotScanResult
from sslyze.plugins.session_renegotiation_plugin import SessionRenegotiationScanResult
from sslyze.scanner.models import AllScanCommandsAttempts
from sslyze.server_connectivity import TlsVersionEnum

from scanners.catalog import default_catalog
from scanners.findings import Severity, Status
from scanners.tls.checks import CHECKS
from scanners.tls.observation import CheckError, Observation, Verdict
from tests.tls_fixtures import (
    SERVER_NAME,
    baseline_attempts,
    deployment,
    hsts,
    observation,
    settings_for,
    suites,
    with_deployments,
    with_failure,
    with_result,
    with_suites,
)
from tests.tls_pki import TEST_OCSP_URL, KeyPair, TestCa, self_signed_without_san

TLS_CONTROLS = [c.id for c in default_catalog().by_evaluator("tls")]
INTERMEDIATE = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
Change = Callable[[AllScanCommandsAttempts], AllScanCommandsAttempts]


@dataclass
class Pki:
    ca: TestCa
    leaf: KeyPair
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    directory = tmp_path_factory.mktemp("tls-unit-pki")
    ca = TestCa(directory)
    yield Pki(ca, ca.issue("leaf", [SERVER_NAME]), directory)


def run_all(obs: Observation) -> dict[str, Verdict | str]:
    """Every control's verdict (or its CheckError message) for one observation."""
    results: dict[str, Verdict | str] = {}
    for control in default_catalog().by_evaluator("tls"):
        try:
            results[control.id] = CHECKS[str(control.check["property"])](obs)
        except CheckError as exc:
            results[control.id] = str(exc)
    return results


def failing(obs: Observation) -> set[str]:
    return {cid for cid, v in run_all(obs).items() if isinstance(v, Verdict) and v.status == Status.FAIL}


def verdict(obs: Observation, control_id: str) -> Verdict:
    result = run_all(obs)[control_id]
    assert isinstance(result, Verdict), result
    return result


def base(pki: Pki, **settings: object) -> tuple[AllScanCommandsAttempts, Observation]:
    attempts = baseline_attempts(pki.leaf)
    return attempts, observation(attempts, settings_for(pki.ca.ca_file, **settings))


def test_baseline_passes_every_control_except_stapling_which_does_not_apply(pki: Pki) -> None:
    _, obs = base(pki)
    results = run_all(obs)
    assert set(results) == set(TLS_CONTROLS)
    statuses = {cid: v.status for cid, v in results.items() if isinstance(v, Verdict)}
    assert statuses == {cid: Status.NOT_APPLICABLE if cid == "TLS-013" else Status.PASS for cid in TLS_CONTROLS}


def test_every_tls_control_has_a_check() -> None:
    properties = {str(c.check["property"]) for c in default_catalog().by_evaluator("tls")}
    assert properties == set(CHECKS)


@pytest.mark.parametrize(
    ("change", "control_id"),
    [
        (lambda a: with_result(a, "tls_compression", CompressionScanResult(True)), "TLS-009"),
        (
            lambda a: with_result(a, "session_renegotiation", SessionRenegotiationScanResult(False, False, 0)),
            "TLS-010",
        ),
        (
            lambda a: with_result(a, "session_renegotiation", SessionRenegotiationScanResult(True, True, 5)),
            "TLS-010",
        ),
        (lambda a: with_result(a, "tls_extended_master_secret", EmsExtensionScanResult(False)), "TLS-010"),
        (lambda a: with_result(a, "heartbleed", HeartbleedScanResult(True)), "TLS-011"),
        (lambda a: with_result(a, "openssl_ccs_injection", OpenSslCcsInjectionScanResult(True)), "TLS-011"),
        (
            lambda a: with_result(a, "robot", RobotScanResult(RobotScanResultEnum.VULNERABLE_STRONG_ORACLE)),
            "TLS-012",
        ),
        (lambda a: with_result(a, "tls_fallback_scsv", FallbackScsvScanResult(False)), "TLS-014"),
        (lambda a: with_result(a, "http_headers", hsts(None)), "TLS-004"),
        (lambda a: with_result(a, "http_headers", hsts(86400)), "TLS-004"),
    ],
)
def test_one_weakness_fails_exactly_its_control(pki: Pki, change: Change, control_id: str) -> None:
    attempts, _ = base(pki)
    obs = observation(change(attempts), settings_for(pki.ca.ca_file))
    assert failing(obs) == {control_id}


def test_tls10_with_cbc_fails_protocols_and_suites_and_lists_the_offenders(pki: Pki) -> None:
    attempts, _ = base(pki)
    changed = with_suites(attempts, TlsVersionEnum.TLS_1_0, ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"])
    changed = with_suites(changed, TlsVersionEnum.TLS_1_1, ["TLS_RSA_WITH_3DES_EDE_CBC_SHA"])
    obs = observation(changed, settings_for(pki.ca.ca_file))
    assert failing(obs) == {"TLS-001", "TLS-002"}
    protocols = verdict(obs, "TLS-001")
    assert protocols.observed == ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert protocols.expected == ["TLSv1.2", "TLSv1.3"]
    suites_verdict = verdict(obs, "TLS-002")
    assert suites_verdict.details["offending"] == [
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    ]
    assert suites_verdict.details["broken"] == ["TLS_RSA_WITH_3DES_EDE_CBC_SHA"]
    assert suites_verdict.severity == Severity.HIGH


def test_cbc_only_deviation_keeps_the_catalog_severity(pki: Pki) -> None:
    attempts, _ = base(pki)
    changed = with_suites(attempts, TlsVersionEnum.TLS_1_2, [*INTERMEDIATE, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"])
    result = verdict(observation(changed, settings_for(pki.ca.ca_file)), "TLS-002")
    assert result.status == Status.FAIL and result.severity is None
    assert result.details["offending"] == ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"]


def test_anonymous_suite_is_high(pki: Pki) -> None:
    attempts, _ = base(pki)
    anon = with_result(
        attempts, "tls_1_2_cipher_suites", suites(TlsVersionEnum.TLS_1_2, ["TLS_ECDH_anon_WITH_AES_128_CBC_SHA"])
    )
    result = verdict(observation(anon, settings_for(pki.ca.ca_file)), "TLS-002")
    assert result.status == Status.FAIL and result.severity == Severity.HIGH


def test_extra_curves_fail_key_exchange_and_are_named(pki: Pki) -> None:
    attempts, _ = base(pki)
    curves = SupportedEllipticCurvesScanResult(
        True, [EllipticCurve("X25519", 1034), EllipticCurve("X448", 1035), EllipticCurve("secp521r1", 716)], []
    )
    obs = observation(with_result(attempts, "elliptic_curves", curves), settings_for(pki.ca.ca_file))
    assert failing(obs) == {"TLS-003"}
    assert verdict(obs, "TLS-003").details["offending"] == ["X448", "secp521r1"]


def test_weak_robot_oracle_fails_as_medium_and_inconsistent_is_an_error(pki: Pki) -> None:
    attempts, _ = base(pki)
    weak = with_result(attempts, "robot", RobotScanResult(RobotScanResultEnum.VULNERABLE_WEAK_ORACLE))
    result = verdict(observation(weak, settings_for(pki.ca.ca_file)), "TLS-012")
    assert result.status == Status.FAIL and result.severity == Severity.MEDIUM
    unknown = with_result(attempts, "robot", RobotScanResult(RobotScanResultEnum.UNKNOWN_INCONSISTENT_RESULTS))
    assert "inconsistent" in str(run_all(observation(unknown, settings_for(pki.ca.ca_file)))["TLS-012"])


def test_tls13_only_makes_compression_renegotiation_and_fallback_not_applicable(pki: Pki) -> None:
    attempts, _ = base(pki)
    only13 = with_suites(attempts, TlsVersionEnum.TLS_1_2, [])
    # sslyze's answers for these are meaningless without TLS 1.2; they must not decide anything.
    only13 = with_result(only13, "tls_compression", CompressionScanResult(True))
    only13 = with_result(only13, "tls_fallback_scsv", FallbackScsvScanResult(False))
    results = run_all(observation(only13, settings_for(pki.ca.ca_file)))
    not_applicable = {cid for cid, v in results.items() if isinstance(v, Verdict) and v.status == Status.NOT_APPLICABLE}
    assert not_applicable == {"TLS-009", "TLS-010", "TLS-013", "TLS-014"}


def test_modern_profile_rejects_tls12_and_its_suites(pki: Pki) -> None:
    _, obs = base(pki, profile="modern")
    assert failing(obs) == {"TLS-001", "TLS-002"}
    assert verdict(obs, "TLS-001").expected == ["TLSv1.3"]


def test_a_failed_scan_command_is_an_error_of_the_controls_that_need_it(pki: Pki) -> None:
    attempts, _ = base(pki)
    broken = with_failure(attempts, "heartbleed", "connection reset by peer")
    results = run_all(observation(broken, settings_for(pki.ca.ca_file)))
    errors = {cid: v for cid, v in results.items() if isinstance(v, str)}
    assert set(errors) == {"TLS-011"}
    assert "sslyze could not test Heartbleed (connectivity issue): connection reset by peer" in errors["TLS-011"]


# --- certificates ----------------------------------------------------------------------------


def cert_obs(pki: Pki, pair: KeyPair, *, now: datetime | None = None, **kwargs: object) -> Observation:
    attempts, _ = base(pki)
    settings = settings_for(pki.ca.ca_file, **{k: v for k, v in kwargs.items() if k != "ocsp_der"})
    ocsp_der = kwargs.get("ocsp_der")
    dep = deployment(pair, ocsp_der=ocsp_der) if isinstance(ocsp_der, Path) else deployment(pair)
    return observation(with_deployments(attempts, [dep]), settings, now=now)


def test_certificate_expiring_within_min_days_fails_as_medium(pki: Pki) -> None:
    obs = cert_obs(pki, pki.leaf, min_days_valid=90)
    result = verdict(obs, "TLS-005")
    assert failing(obs) == {"TLS-005"}
    assert result.severity == Severity.MEDIUM and "expires in 59 days" in result.message
    assert result.observed["days_left"] == 59 and result.expected["min_days_left"] == 90


def test_certificate_not_yet_valid_fails_as_high(pki: Pki) -> None:
    future = pki.ca.issue("future", [SERVER_NAME], valid_days=(10, 40))
    result = verdict(cert_obs(pki, future), "TLS-005")
    assert result.status == Status.FAIL and result.severity == Severity.HIGH and "not valid before" in result.message


def test_lifespan_over_the_profile_maximum_fails_as_low(pki: Pki) -> None:
    long_lived = pki.ca.issue("long", [SERVER_NAME], valid_days=(-1, 400))
    result = verdict(cert_obs(pki, long_lived), "TLS-005")
    assert result.status == Status.FAIL and result.severity == Severity.LOW
    assert result.observed["lifespan_days"] == 401 and result.expected["max_lifespan_days"] == 366


def test_expired_certificate_fails_validity_only_not_trust(pki: Pki) -> None:
    expired = pki.ca.issue("expired", [SERVER_NAME], valid_days=(-60, -1))
    obs = cert_obs(pki, expired)
    assert failing(obs) == {"TLS-005"}
    assert verdict(obs, "TLS-006").status == Status.PASS


def test_trust_fails_for_wrong_name_self_signed_and_unknown_ca(pki: Pki, tmp_path: Path) -> None:
    wrong = pki.ca.issue("wrong", ["other.preaudit.test"])
    assert "no matching subjectAltName" in verdict(cert_obs(pki, wrong), "TLS-006").message
    self_signed = self_signed_without_san(tmp_path, "self", "montecarlo.lab")
    result = verdict(cert_obs(pki, self_signed), "TLS-006")
    assert result.status == Status.FAIL and "no subjectAltName" in result.message
    other_ca = TestCa(tmp_path / "other-ca")
    stranger = other_ca.issue("stranger", [SERVER_NAME])
    result = verdict(cert_obs(pki, stranger), "TLS-006")
    assert result.status == Status.FAIL and result.expected == {"trusted_by": "CA file ca.crt", "name": SERVER_NAME}


def test_key_strength_follows_the_profile(pki: Pki) -> None:
    rsa1024 = pki.ca.issue("rsa1024", [SERVER_NAME], key_kind="rsa1024")
    assert "RSA key of 1024 bits (minimum 2048)" in verdict(cert_obs(pki, rsa1024), "TLS-007").message
    rsa2048 = pki.ca.issue("rsa2048", [SERVER_NAME], key_kind="rsa2048")
    assert verdict(cert_obs(pki, rsa2048), "TLS-007").status == Status.PASS
    modern = verdict(cert_obs(pki, rsa2048, profile="modern"), "TLS-007")
    assert modern.status == Status.FAIL and "the modern profile expects ecdsa" in modern.message
    assert modern.expected["min_rsa_bits"] == 3072
    p384 = pki.ca.issue("p384", [SERVER_NAME], key_kind="ec384")
    assert verdict(cert_obs(pki, p384), "TLS-007").observed == {"type": "ecdsa", "bits": 384, "curve": "secp384r1"}


def test_sha1_signed_leaf_fails_signature(pki: Pki) -> None:
    sha1 = pki.ca.issue_sha1("sha1", [SERVER_NAME])
    result = verdict(cert_obs(pki, sha1), "TLS-008")
    assert result.status == Status.FAIL and result.observed["leaf"] == "ecdsa-with-SHA1"
    assert "leaf CN=unit.preaudit.test is signed with ecdsa-with-SHA1" in result.message


def test_ocsp_stapling_is_judged_only_when_the_certificate_names_a_responder(pki: Pki) -> None:
    with_url = pki.ca.issue("with-url", [SERVER_NAME], ocsp_url=TEST_OCSP_URL)
    assert verdict(cert_obs(pki, pki.leaf), "TLS-013").status == Status.NOT_APPLICABLE
    unstapled = verdict(cert_obs(pki, with_url), "TLS-013")
    assert unstapled.status == Status.FAIL and unstapled.observed == {"ocsp_url": TEST_OCSP_URL, "stapled": False}
    good = pki.ca.ocsp_response(with_url.certificate, pki.directory / "good.der")
    assert verdict(cert_obs(pki, with_url, ocsp_der=good), "TLS-013").status == Status.PASS


@pytest.mark.parametrize(
    ("status", "next_update_days", "message"),
    [
        (ocsp.OCSPCertStatus.REVOKED, 7, "says the certificate is revoked"),
        (ocsp.OCSPCertStatus.GOOD, -1, "is stale"),
    ],
)
def test_bad_stapled_response_fails(pki: Pki, status: ocsp.OCSPCertStatus, next_update_days: int, message: str) -> None:
    with_url = pki.ca.issue("staple", [SERVER_NAME], ocsp_url=TEST_OCSP_URL)
    der = pki.ca.ocsp_response(
        with_url.certificate, pki.directory / f"{status.name}.der", status=status, next_update_days=next_update_days
    )
    result = verdict(cert_obs(pki, with_url, ocsp_der=der), "TLS-013")
    assert result.status == Status.FAIL and message in result.message


def test_server_without_certificate_fails_trust_and_skips_the_other_certificate_controls(pki: Pki) -> None:
    attempts, _ = base(pki)
    obs = observation(with_deployments(attempts, []), settings_for(pki.ca.ca_file))
    results = run_all(obs)
    assert isinstance(results["TLS-006"], Verdict) and results["TLS-006"].status == Status.FAIL
    for cid in ("TLS-005", "TLS-007", "TLS-008", "TLS-013"):
        result = results[cid]
        assert isinstance(result, Verdict) and result.status == Status.NOT_APPLICABLE


def test_each_deployment_is_judged(pki: Pki) -> None:
    rsa1024 = pki.ca.issue("dual-rsa", [SERVER_NAME], key_kind="rsa1024")
    attempts, _ = base(pki)
    dual = with_deployments(attempts, [deployment(pki.leaf), deployment(rsa1024)])
    result = verdict(observation(dual, settings_for(pki.ca.ca_file)), "TLS-007")
    assert result.status == Status.FAIL and isinstance(result.observed, list) and len(result.observed) == 2


# --- HTTP headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        ({}, 3),
        ({"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}, 1),
        (
            {
                "x-content-type-options": "nosniff",
                "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
            },
            1,
        ),
        (
            {
                "x-content-type-options": "nosniff",
                "x-frame-options": "SAMEORIGIN",
                "referrer-policy": "no-referrer, unsafe-url",
            },
            1,
        ),
        (
            {
                "x-content-type-options": "nosniff",
                "x-frame-options": "deny",
                "referrer-policy": "unsafe-url, same-origin",
            },
            0,
        ),
    ],
)
def test_security_headers(pki: Pki, headers: dict[str, str], missing: int) -> None:
    attempts, _ = base(pki)
    result = verdict(observation(attempts, settings_for(pki.ca.ca_file), headers=headers), "TLS-015")
    assert len(result.details.get("missing", [])) == missing
    assert result.status == (Status.FAIL if missing else Status.PASS)


@pytest.mark.parametrize(
    ("server", "powered_by", "discloses"),
    [
        ("nginx", None, False),
        ("nginx/1.22.1", None, True),
        ("Apache", "PHP/8.1.2", True),
        ("cloudflare", None, False),
        (None, None, False),
        ("Microsoft-IIS/10.0", None, True),
    ],
)
def test_version_disclosure(pki: Pki, server: str | None, powered_by: str | None, discloses: bool) -> None:
    headers = {k: v for k, v in (("server", server), ("x-powered-by", powered_by)) if v is not None}
    attempts, _ = base(pki)
    result = verdict(observation(attempts, settings_for(pki.ca.ca_file), headers=headers), "TLS-016")
    assert result.status == (Status.FAIL if discloses else Status.PASS)


def test_no_http_response_is_an_error_of_the_header_controls_only(pki: Pki) -> None:
    attempts, _ = base(pki)
    results = run_all(observation(attempts, settings_for(pki.ca.ca_file), http_error="no valid HTTP response"))
    errors = {cid for cid, v in results.items() if isinstance(v, str)}
    assert errors == {"TLS-015", "TLS-016"}


def test_hsts_minimum_comes_from_the_caller(pki: Pki) -> None:
    attempts, _ = base(pki)
    strict = observation(attempts, settings_for(pki.ca.ca_file, hsts_min_age=63072001))
    result = verdict(strict, "TLS-004")
    assert result.status == Status.FAIL and result.observed["max_age"] == 63072000
    assert result.expected == {"max_age_at_least": 63072001}


def test_checks_use_the_observation_time(pki: Pki) -> None:
    later = datetime.now(UTC) + timedelta(days=120)
    result = verdict(cert_obs(pki, pki.leaf, now=later), "TLS-005")
    assert result.status == Status.FAIL and "expired on" in result.message
