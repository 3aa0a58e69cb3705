"""TLS-006: is the served chain trusted for the server name? Judged with cryptography's verifier.

sslyze validates at the current time, so an expired certificate would fail trust as well as
validity. Here the chain is verified at a moment when every certificate in it was valid (now,
if it is), so expiry is reported once, by TLS-005, and this check answers only "would a client
that trusts these anchors accept this chain for this name".
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

# sslyze exports this class from its package root, which mypy does not accept as an explicit export.
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult

from scanners.findings import Status
from scanners.tls.observation import Observation, Verdict
from scanners.tls.settings import TrustAnchors

_PROCESSING_SUFFIX = re.compile(r"\s*\(encountered processing <Certificate\(.*\)>\)\s*$", re.DOTALL)
# cryptography prints a forbidden algorithm as a Rust debug dump; only its OID is useful.
_RAW_OID = re.compile(r"AlgorithmIdentifier \{.*ObjectIdentifier \{ oid: ([0-9.]+) \}[^}]*\}", re.DOTALL)


def readable_error(message: str) -> str:
    """cryptography's message without the certificate dump, with algorithm OIDs named."""
    message = _PROCESSING_SUFFIX.sub("", message).removeprefix("validation failed: ")
    return _RAW_OID.sub(lambda m: x509.ObjectIdentifier(m.group(1))._name, message)


def _subject(name: str) -> x509.verification.Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def validation_time(chain: list[x509.Certificate], now: datetime) -> datetime:
    """Now if every certificate is valid now, else the moment closest to now when all of them were."""
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    if start > end:
        return now  # never valid together: let the verifier say so
    return min(max(now, start + timedelta(seconds=1)), end - timedelta(seconds=1))


def certificate_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def verify_chain(chain: list[x509.Certificate], anchors: TrustAnchors, name: str, now: datetime) -> str | None:
    """None if trusted for ``name``; else the verifier's reason."""
    try:
        subject = _subject(name)
    except ValueError:
        return f"{name!r} is not a valid DNS name or IP address"
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors.certificates)))
        .time(validation_time(chain, now))
        .build_server_verifier(subject)
    )
    try:
        verifier.verify(chain[0], chain[1:])
    except VerificationError as exc:
        return readable_error(str(exc))
    return None


def _judge(deployment: CertificateDeploymentAnalysisResult, obs: Observation, name: str) -> dict[str, object]:
    chain = deployment.received_certificate_chain
    error = verify_chain(chain, obs.settings.anchors, name, obs.now)
    return {
        "trusted": error is None,
        "error": error,
        "subject": chain[0].subject.rfc4514_string(),
        "names": certificate_names(chain[0]),
        "issuer": chain[0].issuer.rfc4514_string(),
    }


def check_certificate_trust(obs: Observation, deployments: list[CertificateDeploymentAnalysisResult]) -> Verdict:
    name = obs.endpoint.server_name or obs.endpoint.address
    expected = {"trusted_by": obs.settings.anchors.label, "name": name}
    if not deployments:
        return Verdict(Status.FAIL, "sends no certificate (anonymous key exchange only)", None, expected)
    judged = [_judge(d, obs, name) for d in deployments]
    observed: object = judged[0] if len(judged) == 1 else judged
    failures = [j for j in judged if not j["trusted"]]
    if not failures:
        message = f"certificate is trusted by the {obs.settings.anchors.label} for {name}"
        return Verdict(Status.PASS, message, observed, expected)
    first = failures[0]
    message = f"certificate {first['subject']} is not trusted for {name}: {first['error']}"
    return Verdict(Status.FAIL, message, observed, expected)
