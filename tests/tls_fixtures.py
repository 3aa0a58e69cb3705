"""sslyze results built by hand for unit tests of the TLS checks: a clean baseline plus one change per test.

``baseline_attempts`` is what sslyze reports for a Mozilla-intermediate server (the same
shape the real hardened test server produces); tests replace one scan command's result with
``dataclasses.replace`` to show that exactly the control judging it changes.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from traceback import TracebackException
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp
from nassl.ephemeral_key_info import EcDhEphemeralKeyInfo, OpenSslEcNidEnum, OpenSslEvpPkeyEnum
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult
from sslyze.plugins.certificate_info.implementation import CertificateInfoScanResult
from sslyze.plugins.compression_plugin import CompressionScanResult
from sslyze.plugins.elliptic_curves_plugin import EllipticCurve, SupportedEllipticCurvesScanResult
from sslyze.plugins.ems_extension_plugin import EmsExtensionScanResult
from sslyze.plugins.fallback_scsv_plugin import FallbackScsvScanResult
from sslyze.plugins.heartbleed_plugin import HeartbleedScanResult
from sslyze.plugins.http_headers_plugin import HttpHeadersScanResult, StrictTransportSecurityHeader
from sslyze.plugins.openssl_ccs_injection_plugin import OpenSslCcsInjectionScanResult
from sslyze.plugins.openssl_cipher_suites._test_cipher_suite import CipherSuiteAcceptedByServer
from sslyze.plugins.openssl_cipher_suites.cipher_suites import CipherSuite
from sslyze.plugins.openssl_cipher_suites.implementation import CipherSuitesScanResult
from sslyze.plugins.robot._robot_tester import RobotScanResultEnum
from sslyze.plugins.robot.implementation import RobotScanResult
from sslyze.plugins.scan_commands import ScanCommand
from sslyze.plugins.session_renegotiation_plugin import SessionRenegotiationScanResult
from sslyze.scanner.models import AllScanCommandsAttempts, get_scan_command_attempt_cls
from sslyze.scanner.scan_command_attempt import (
    ScanCommandAttempt,
    ScanCommandAttemptStatusEnum,
    ScanCommandErrorReasonEnum,
)
from sslyze.server_connectivity import TlsVersionEnum

from scanners.scanning import TlsEndpoint
from scanners.tls.http_headers import HttpSnapshot
from scanners.tls.observation import Observation
from scanners.tls.settings import ScanSettings, build_settings
from tests.tls_pki import KeyPair

SERVER_NAME = "unit.preaudit.test"
ENDPOINT = TlsEndpoint(address="127.0.0.1", port=8443, server_name=SERVER_NAME, host="unit-host")
INTERMEDIATE_TLS12_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
]
TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
HARDENED_HEADERS = {
    "server": "nginx",
    "strict-transport-security": "max-age=63072000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
_VERSION_FIELDS = {
    TlsVersionEnum.SSL_2_0: "ssl_2_0_cipher_suites",
    TlsVersionEnum.SSL_3_0: "ssl_3_0_cipher_suites",
    TlsVersionEnum.TLS_1_0: "tls_1_0_cipher_suites",
    TlsVersionEnum.TLS_1_1: "tls_1_1_cipher_suites",
    TlsVersionEnum.TLS_1_2: "tls_1_2_cipher_suites",
    TlsVersionEnum.TLS_1_3: "tls_1_3_cipher_suites",
}


def attempt(field: str, result: object) -> Any:
    """A completed attempt of the scan command whose result lives in ``field`` (its own attempt class)."""
    return get_scan_command_attempt_cls(ScanCommand(field))(ScanCommandAttemptStatusEnum.COMPLETED, None, None, result)


def with_result(attempts: AllScanCommandsAttempts, field: str, result: object) -> AllScanCommandsAttempts:
    return dataclasses.replace(attempts, **{field: attempt(field, result)})


def with_failure(attempts: AllScanCommandsAttempts, field: str, message: str) -> AllScanCommandsAttempts:
    trace = TracebackException.from_exception(ConnectionResetError(message))
    failure: Any = get_scan_command_attempt_cls(ScanCommand(field))(
        ScanCommandAttemptStatusEnum.ERROR, ScanCommandErrorReasonEnum.CONNECTIVITY_ISSUE, trace, None
    )
    return dataclasses.replace(attempts, **{field: failure})


def x25519() -> EcDhEphemeralKeyInfo:
    return EcDhEphemeralKeyInfo(OpenSslEvpPkeyEnum.X25519, 253, bytearray(32), OpenSslEcNidEnum.X25519)


def suites(version: TlsVersionEnum, names: list[str], *, anonymous: bool = False) -> CipherSuitesScanResult:
    accepted = [
        CipherSuiteAcceptedByServer(CipherSuite(name, anonymous, 128, name), x25519() if "DH" in name else None)
        for name in names
    ]
    return CipherSuitesScanResult(version, accepted, [])


def with_suites(
    attempts: AllScanCommandsAttempts, version: TlsVersionEnum, names: list[str]
) -> AllScanCommandsAttempts:
    return with_result(attempts, _VERSION_FIELDS[version], suites(version, names))


def deployment(
    pair: KeyPair,
    *,
    chain: list[x509.Certificate] | None = None,
    ocsp_der: Path | None = None,
    ocsp_trusted: bool = True,
) -> CertificateDeploymentAnalysisResult:
    response = ocsp.load_der_ocsp_response(ocsp_der.read_bytes()) if ocsp_der else None
    return CertificateDeploymentAnalysisResult(
        received_certificate_chain=chain or [pair.certificate],
        leaf_certificate_has_must_staple_extension=False,
        leaf_certificate_is_ev=False,
        leaf_certificate_signed_certificate_timestamps_count=0,
        received_chain_contains_anchor_certificate=False,
        received_chain_has_valid_order=True,
        path_validation_results=[],
        verified_chain_has_sha1_signature=False,
        verified_chain_has_legacy_symantec_anchor=False,
        ocsp_response=response,
        ocsp_response_is_trusted=ocsp_trusted if response else None,
    )


def with_deployments(
    attempts: AllScanCommandsAttempts, deployments: list[CertificateDeploymentAnalysisResult]
) -> AllScanCommandsAttempts:
    return with_result(attempts, "certificate_info", CertificateInfoScanResult(SERVER_NAME, deployments, None))


def hsts(max_age: int | None) -> HttpHeadersScanResult:
    header = None if max_age is None else StrictTransportSecurityHeader(max_age, False, False)
    return HttpHeadersScanResult("GET / HTTP/1.1", None, "/", header)


def baseline_attempts(pair: KeyPair) -> AllScanCommandsAttempts:
    """A Mozilla-intermediate server: TLS 1.2 + 1.3 ECDHE AEAD suites, P-256 certificate, nothing vulnerable."""
    not_scheduled: Any = ScanCommandAttempt(ScanCommandAttemptStatusEnum.NOT_SCHEDULED, None, None, None)
    results: dict[str, object] = {field: suites(version, []) for version, field in _VERSION_FIELDS.items()}
    results |= {
        "certificate_info": CertificateInfoScanResult(SERVER_NAME, [deployment(pair)], None),
        "tls_1_2_cipher_suites": suites(TlsVersionEnum.TLS_1_2, INTERMEDIATE_TLS12_SUITES),
        "tls_1_3_cipher_suites": suites(TlsVersionEnum.TLS_1_3, TLS13_SUITES),
        "tls_compression": CompressionScanResult(False),
        "openssl_ccs_injection": OpenSslCcsInjectionScanResult(False),
        "tls_fallback_scsv": FallbackScsvScanResult(True),
        "heartbleed": HeartbleedScanResult(False),
        "robot": RobotScanResult(RobotScanResultEnum.NOT_VULNERABLE_RSA_NOT_SUPPORTED),
        "session_renegotiation": SessionRenegotiationScanResult(True, False, 0),
        "elliptic_curves": SupportedEllipticCurvesScanResult(
            True, [EllipticCurve("X25519", 1034), EllipticCurve("secp256r1", 415), EllipticCurve("secp384r1", 715)], []
        ),
        "http_headers": hsts(63072000),
        "tls_extended_master_secret": EmsExtensionScanResult(True),
    }
    return AllScanCommandsAttempts(
        tls_1_3_early_data=not_scheduled,
        session_resumption=not_scheduled,
        **{field: attempt(field, result) for field, result in results.items()},
    )


def settings_for(ca_file: Path, **overrides: Any) -> ScanSettings:
    arguments: dict[str, Any] = {
        "timeout": 5.0,
        "min_days_valid": 30,
        "ca_file": ca_file,
        "profile": "intermediate",
        "hsts_min_age": 63072000,
    }
    return build_settings(**{**arguments, **overrides})


def observation(
    attempts: AllScanCommandsAttempts,
    settings: ScanSettings,
    *,
    headers: dict[str, str] | None = None,
    http_error: str | None = None,
    now: datetime | None = None,
) -> Observation:
    kept = HARDENED_HEADERS if headers is None else headers
    http = HttpSnapshot(error=http_error) if http_error else HttpSnapshot(200, dict(kept))
    return Observation(ENDPOINT, attempts, http, settings, now or datetime.now(UTC))
