"""TLS-005 to TLS-008 and TLS-013: the served certificate's validity, trust, key, signature and OCSP stapling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

# sslyze exports this class from its package root, which mypy does not accept as an explicit export.
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult

from scanners.findings import Severity, Status
from scanners.tls.observation import Observation, Verdict, completed, not_applicable
from scanners.tls.trust import check_certificate_trust

Deployments = list[CertificateDeploymentAnalysisResult]


def deployments(obs: Observation) -> Deployments:
    """Every certificate chain the server deploys with SNI (usually one; RSA + ECDSA servers have two)."""
    return list(completed(obs.attempts.certificate_info, "the certificate").certificate_deployments)


def _per_deployment(
    obs: Observation, judge: Callable[[CertificateDeploymentAnalysisResult], dict[str, Any]]
) -> tuple[list[dict[str, Any]], Any]:
    judged = [judge(d) for d in deployments(obs)]
    return judged, (judged[0] if len(judged) == 1 else judged)


def _issued_certificates(chain: list[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf and the intermediates a server sends; a self-signed anchor it may send is not judged."""
    return [chain[0]] + [c for c in chain[1:] if c.issuer != c.subject]


def _no_certificate() -> Verdict:
    return not_applicable("the server sends no certificate (see TLS-006)")


def check_certificate_validity(obs: Observation) -> Verdict:
    settings, now = obs.settings, obs.now
    max_lifespan = settings.profile.maximum_certificate_lifespan
    expected = {"valid_now": True, "min_days_left": settings.min_days_valid, "max_lifespan_days": max_lifespan}
    problems: list[tuple[Severity, str]] = []

    def judge(deployment: CertificateDeploymentAnalysisResult) -> dict[str, Any]:
        leaf = deployment.received_certificate_chain[0]
        name = leaf.subject.rfc4514_string()
        days_left = (leaf.not_valid_after_utc - now).days
        lifespan = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        if now < leaf.not_valid_before_utc:
            problems.append((Severity.HIGH, f"{name} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"))
        elif now > leaf.not_valid_after_utc:
            problems.append((Severity.HIGH, f"{name} expired on {leaf.not_valid_after_utc:%Y-%m-%d}"))
        elif days_left < settings.min_days_valid:
            problems.append((Severity.MEDIUM, f"{name} expires in {days_left} days"))
        if lifespan > max_lifespan:
            problems.append((Severity.LOW, f"{name} is valid for {lifespan} days (maximum {max_lifespan})"))
        for cert in _issued_certificates(deployment.received_certificate_chain)[1:]:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                problems.append((Severity.HIGH, f"intermediate {cert.subject.rfc4514_string()} is not valid now"))
        return {
            "subject": name,
            "not_before": leaf.not_valid_before_utc.isoformat(),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "days_left": days_left,
            "lifespan_days": lifespan,
        }

    judged, observed = _per_deployment(obs, judge)
    if not judged:
        return _no_certificate()
    if not problems:
        return Verdict(Status.PASS, f"valid for {judged[0]['days_left']} more days", observed, expected)
    worst = max((severity for severity, _ in problems), key=lambda s: s.rank)
    return Verdict(Status.FAIL, "; ".join(text for _, text in problems), observed, expected, severity=worst)


def check_trust(obs: Observation) -> Verdict:
    return check_certificate_trust(obs, deployments(obs))


def _describe_key(cert: x509.Certificate) -> dict[str, Any]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return {"type": "rsa", "bits": key.key_size}
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"type": "ecdsa", "bits": key.curve.key_size, "curve": key.curve.name}
    return {"type": type(key).__name__.removeprefix("_").lower(), "bits": None}


def check_certificate_key(obs: Observation) -> Verdict:
    settings = obs.settings
    types, curves = sorted(settings.profile.certificate_types), sorted(settings.profile.certificate_curves)
    expected = {"types": types, "min_rsa_bits": settings.min_rsa_bits, "curves": curves}
    problems: list[str] = []

    def judge(deployment: CertificateDeploymentAnalysisResult) -> dict[str, Any]:
        key = _describe_key(deployment.received_certificate_chain[0])
        if key["type"] not in types:
            problems.append(f"{key['type']} key, the {settings.profile_name} profile expects {' or '.join(types)}")
        elif key["type"] == "rsa" and key["bits"] < settings.min_rsa_bits:
            problems.append(f"RSA key of {key['bits']} bits (minimum {settings.min_rsa_bits})")
        elif key["type"] == "ecdsa" and key["curve"] not in curves:
            problems.append(f"EC key on {key['curve']} (expected {' or '.join(curves)})")
        return key

    judged, observed = _per_deployment(obs, judge)
    if not judged:
        return _no_certificate()
    if not problems:
        return Verdict(Status.PASS, "; ".join(_key_text(k) for k in judged), observed, expected)
    return Verdict(Status.FAIL, "; ".join(problems), observed, expected)


def _key_text(key: dict[str, Any]) -> str:
    return f"{key['type']} key of {key['bits']} bits" + (f" on {key['curve']}" if key.get("curve") else "")


def _signature(cert: x509.Certificate) -> tuple[str, bool]:
    """The signature algorithm's name and whether its hash is SHA-1 or MD5."""
    name = cert.signature_algorithm_oid._name
    try:
        digest = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        digest = None
    weak = isinstance(digest, hashes.SHA1 | hashes.MD5) or any(h in name.lower() for h in ("sha1", "md5"))
    return name, weak


def check_certificate_signature(obs: Observation) -> Verdict:
    allowed = sorted(obs.settings.profile.certificate_signatures)
    expected = {"leaf_signature_in": allowed, "no_sha1_or_md5": True}
    problems: list[str] = []
    md5 = False

    def judge(deployment: CertificateDeploymentAnalysisResult) -> dict[str, Any]:
        nonlocal md5
        signatures = []
        for index, cert in enumerate(_issued_certificates(deployment.received_certificate_chain)):
            name, weak = _signature(cert)
            role = "leaf" if index == 0 else "intermediate"
            signatures.append({"certificate": cert.subject.rfc4514_string(), "role": role, "signature": name})
            if weak:
                problems.append(f"{role} {cert.subject.rfc4514_string()} is signed with {name}")
                md5 = md5 or "md5" in name.lower()
            elif index == 0 and name not in allowed:
                problems.append(f"leaf signature {name} is not one the profile allows")
        return {"leaf": signatures[0]["signature"], "chain": signatures}

    judged, observed = _per_deployment(obs, judge)
    if not judged:
        return _no_certificate()
    if not problems:
        return Verdict(Status.PASS, f"signed with {', '.join(j['leaf'] for j in judged)}", observed, expected)
    return Verdict(Status.FAIL, "; ".join(problems), observed, expected, severity=Severity.HIGH if md5 else None)


def ocsp_responder_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for access in aia:
        if access.access_method == AuthorityInformationAccessOID.OCSP:
            return str(access.access_location.value)
    return None


def _stapling_problem(deployment: CertificateDeploymentAnalysisResult, obs: Observation) -> tuple[dict[str, Any], str]:
    response = deployment.ocsp_response
    if response is None:
        return {"stapled": False}, "no OCSP response is stapled"
    observed: dict[str, Any] = {"stapled": True, "response_status": response.response_status.name.lower()}
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return observed, f"the stapled OCSP response is {observed['response_status']}"
    observed["certificate_status"] = response.certificate_status.name.lower()
    observed["next_update"] = response.next_update_utc.isoformat() if response.next_update_utc else None
    observed["trusted"] = deployment.ocsp_response_is_trusted
    if response.certificate_status != ocsp.OCSPCertStatus.GOOD:
        return observed, f"the stapled OCSP response says the certificate is {observed['certificate_status']}"
    if response.next_update_utc is not None and response.next_update_utc < obs.now:
        return observed, "the stapled OCSP response is stale"
    if deployment.ocsp_response_is_trusted is False:
        return observed, "the stapled OCSP response is not signed by a trusted responder"
    return observed, ""


def check_ocsp_stapling(obs: Observation) -> Verdict:
    expected = {"stapled": True, "certificate_status": "good"}
    judged: list[dict[str, Any]] = []
    problems: list[str] = []
    for deployment in deployments(obs):
        url = ocsp_responder_url(deployment.received_certificate_chain[0])
        if url is None:
            continue
        observed, problem = _stapling_problem(deployment, obs)
        judged.append({"ocsp_url": url, **observed})
        if problem:
            problems.append(problem)
    if not judged:
        return not_applicable("the certificate names no OCSP responder")
    observed_value: Any = judged[0] if len(judged) == 1 else judged
    if problems:
        return Verdict(Status.FAIL, "; ".join(problems), observed_value, expected)
    return Verdict(Status.PASS, "a good OCSP response is stapled", observed_value, expected)
