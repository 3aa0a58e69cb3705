"""What the TLS checks read (one endpoint's sslyze results and HTTP headers) and what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sslyze.plugins.openssl_cipher_suites.implementation import CipherSuitesScanResult
from sslyze.scanner.models import AllScanCommandsAttempts
from sslyze.scanner.scan_command_attempt import ScanCommandAttempt, ScanCommandAttemptStatusEnum

from scanners.findings import Severity, Status
from scanners.scanning import TlsEndpoint
from scanners.tls.http_headers import HttpSnapshot
from scanners.tls.settings import ScanSettings

ResultT = TypeVar("ResultT")

# sslyze's cipher suite results per protocol, oldest first, with the names reports use.
PROTOCOL_FIELDS = (
    ("ssl_2_0_cipher_suites", "SSLv2"),
    ("ssl_3_0_cipher_suites", "SSLv3"),
    ("tls_1_0_cipher_suites", "TLSv1.0"),
    ("tls_1_1_cipher_suites", "TLSv1.1"),
    ("tls_1_2_cipher_suites", "TLSv1.2"),
    ("tls_1_3_cipher_suites", "TLSv1.3"),
)


class CheckError(Exception):
    """The check could not decide (a probe failed); the finding becomes an error of that control."""


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str
    observed: Any = None
    expected: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    # Set when this result is worse (or milder) than the control's catalog severity.
    severity: Severity | None = None


@dataclass(frozen=True)
class Observation:
    endpoint: TlsEndpoint
    attempts: AllScanCommandsAttempts
    http: HttpSnapshot
    settings: ScanSettings
    now: datetime

    def protocol_results(self) -> dict[str, CipherSuitesScanResult]:
        """Cipher suite results by protocol name; every protocol must have been tested."""
        return {name: completed(getattr(self.attempts, attr), f"{name} support") for attr, name in PROTOCOL_FIELDS}

    def accepted_versions(self) -> list[str]:
        return [name for name, result in self.protocol_results().items() if result.is_tls_version_supported]

    def only_tls13(self) -> bool:
        """True when TLS 1.3 is the only protocol accepted: renegotiation, compression and fallback do not exist."""
        return self.accepted_versions() == ["TLSv1.3"]


def completed(attempt: ScanCommandAttempt[ResultT], what: str) -> ResultT:
    """The result of a sslyze scan command, or CheckError saying why it is missing."""
    if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED and attempt.result is not None:
        return attempt.result
    reason = attempt.error_reason.value.lower().replace("_", " ") if attempt.error_reason else attempt.status.value
    detail = f": {attempt.error_trace}" if attempt.error_trace is not None and str(attempt.error_trace) else ""
    raise CheckError(f"sslyze could not test {what} ({reason}){detail}")


def not_applicable(message: str, **details: Any) -> Verdict:
    return Verdict(Status.NOT_APPLICABLE, message, details=dict(details))
