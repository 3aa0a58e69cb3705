"""TLS-009 to TLS-012 and TLS-014: protocol features and implementation flaws sslyze probes for."""

from __future__ import annotations

# sslyze exports this enum from its package root, which mypy does not accept as an explicit export.
from sslyze.plugins.robot._robot_tester import RobotScanResultEnum

from scanners.findings import Severity, Status
from scanners.tls.observation import CheckError, Observation, Verdict, completed, not_applicable

_TLS13_ONLY = "only TLS 1.3 is accepted, which has no {}"


def check_compression(obs: Observation) -> Verdict:
    if obs.only_tls13():
        return not_applicable(_TLS13_ONLY.format("compression"))
    compressed = completed(obs.attempts.tls_compression, "TLS compression").supports_compression
    observed = {"compression": compressed}
    if compressed:
        return Verdict(Status.FAIL, "TLS compression is accepted (CRIME)", observed, {"compression": False})
    return Verdict(Status.PASS, "TLS compression is refused", observed, {"compression": False})


def check_renegotiation(obs: Observation) -> Verdict:
    if obs.only_tls13():
        return not_applicable(_TLS13_ONLY.format("renegotiation"))
    renegotiation = completed(obs.attempts.session_renegotiation, "renegotiation")
    ems = completed(obs.attempts.tls_extended_master_secret, "the extended master secret")
    observed = {
        "secure_renegotiation": renegotiation.supports_secure_renegotiation,
        "client_renegotiation_accepted": renegotiation.is_vulnerable_to_client_renegotiation_dos,
        "extended_master_secret": ems.supports_ems_extension,
    }
    expected = {"secure_renegotiation": True, "client_renegotiation_accepted": False, "extended_master_secret": True}
    problems = []
    if not renegotiation.supports_secure_renegotiation:
        problems.append("secure renegotiation (RFC 5746) is not supported")
    if renegotiation.is_vulnerable_to_client_renegotiation_dos:
        problems.append("client-initiated renegotiation is accepted")
    if not ems.supports_ems_extension:
        problems.append("the extended master secret (RFC 7627) is not supported")
    if problems:
        return Verdict(Status.FAIL, "; ".join(problems), observed, expected)
    return Verdict(Status.PASS, "renegotiation is secure and client renegotiation is refused", observed, expected)


def check_heartbleed(obs: Observation) -> Verdict:
    heartbleed = completed(obs.attempts.heartbleed, "Heartbleed").is_vulnerable_to_heartbleed
    ccs = completed(obs.attempts.openssl_ccs_injection, "the CCS injection").is_vulnerable_to_ccs_injection
    observed = {"heartbleed": heartbleed, "ccs_injection": ccs}
    expected = {"heartbleed": False, "ccs_injection": False}
    problems = [name for name, vulnerable in (("Heartbleed", heartbleed), ("the CCS injection", ccs)) if vulnerable]
    if problems:
        return Verdict(Status.FAIL, f"vulnerable to {' and '.join(problems)}", observed, expected)
    return Verdict(Status.PASS, "not vulnerable to Heartbleed or the CCS injection", observed, expected)


def check_robot(obs: Observation) -> Verdict:
    robot = completed(obs.attempts.robot, "ROBOT").robot_result
    observed = robot.value.lower()
    expected = "not vulnerable"
    if robot == RobotScanResultEnum.UNKNOWN_INCONSISTENT_RESULTS:
        raise CheckError("sslyze got inconsistent answers to the ROBOT probes; run the scan again")
    if robot == RobotScanResultEnum.VULNERABLE_STRONG_ORACLE:
        return Verdict(Status.FAIL, "RSA padding oracle (ROBOT), strong: attacks are practical", observed, expected)
    if robot == RobotScanResultEnum.VULNERABLE_WEAK_ORACLE:
        return Verdict(Status.FAIL, "RSA padding oracle (ROBOT), weak", observed, expected, severity=Severity.MEDIUM)
    if robot == RobotScanResultEnum.NOT_VULNERABLE_RSA_NOT_SUPPORTED:
        return Verdict(Status.PASS, "RSA key exchange is not offered", observed, expected)
    return Verdict(Status.PASS, "RSA key exchange shows no padding oracle", observed, expected)


def check_fallback_scsv(obs: Observation) -> Verdict:
    if obs.only_tls13():
        return not_applicable(_TLS13_ONLY.format("older protocol to fall back to"))
    supported = completed(obs.attempts.tls_fallback_scsv, "TLS_FALLBACK_SCSV").supports_fallback_scsv
    observed, expected = {"fallback_scsv": supported}, {"fallback_scsv": True}
    if supported:
        return Verdict(Status.PASS, "a forced protocol fallback is refused", observed, expected)
    return Verdict(Status.FAIL, "TLS_FALLBACK_SCSV is not honoured: downgrades are possible", observed, expected)
