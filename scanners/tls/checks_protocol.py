"""TLS-001 to TLS-003: which protocol versions, cipher suites and key exchange groups are accepted."""

from __future__ import annotations

from nassl.ephemeral_key_info import DhEphemeralKeyInfo, EcDhEphemeralKeyInfo

from scanners.findings import Severity, Status
from scanners.tls.observation import Observation, Verdict, completed

# Parts of a suite name that make it broken rather than merely outside the profile.
BROKEN_SUITE_MARKERS = ("_anon_", "_NULL_", "_RC4_", "_DES_", "_3DES_", "DES40", "EXPORT", "_MD5")
# OpenSSL reports X25519 as 253 bits; Mozilla's checker adds 3 so that it compares as 256.
_X25519_SIZE_CORRECTION = 3


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_protocol_versions(obs: Observation) -> Verdict:
    accepted = obs.accepted_versions()
    allowed = obs.settings.allowed_versions
    offending = [v for v in accepted if v not in allowed]
    if not offending:
        return Verdict(Status.PASS, f"accepts {', '.join(accepted)} only", accepted, allowed)
    return Verdict(Status.FAIL, f"accepts {', '.join(offending)}", accepted, allowed, {"offending": offending})


def check_cipher_suites(obs: Observation) -> Verdict:
    profile = obs.settings.profile
    by_protocol: dict[str, list[str]] = {}
    offending: list[str] = []
    is_anonymous = False
    for name, result in obs.protocol_results().items():
        allowed = profile.ciphersuites if name == "TLSv1.3" else profile.ciphers.iana
        suites = [s.cipher_suite for s in result.accepted_cipher_suites]
        if suites:
            by_protocol[name] = sorted(s.name for s in suites)
        for suite in suites:
            is_anonymous = is_anonymous or suite.is_anonymous
            if suite.name not in allowed and suite.name not in offending:
                offending.append(suite.name)
    accepted = sorted({s for suites in by_protocol.values() for s in suites})
    expected = sorted(profile.ciphersuites | profile.ciphers.iana)
    details = {"by_protocol": by_protocol}
    if not offending:
        return Verdict(
            Status.PASS, f"all {len(accepted)} accepted suites are in the profile", accepted, expected, details
        )
    offending.sort()
    broken = [s for s in offending if any(marker in s for marker in BROKEN_SUITE_MARKERS)]
    severity = Severity.HIGH if broken or is_anonymous else None
    message = f"accepts {len(offending)} suites outside the {obs.settings.profile_name} profile: {_listing(offending)}"
    if broken:
        message += f" ({len(broken)} broken: {_listing(broken, 4)})"
    return Verdict(
        Status.FAIL, message, accepted, expected, {**details, "offending": offending, "broken": broken}, severity
    )


def check_key_exchange_groups(obs: Observation) -> Verdict:
    settings = obs.settings
    curves_result = completed(obs.attempts.elliptic_curves, "the supported elliptic curves")
    groups = {curve.name for curve in curves_result.supported_curves or []}
    smallest_ecdh: int | None = None
    smallest_dh: int | None = None
    for result in obs.protocol_results().values():
        for accepted in result.accepted_cipher_suites:
            key = accepted.ephemeral_key
            if isinstance(key, EcDhEphemeralKeyInfo):
                groups.add(key.curve_name)
                size = key.size + _X25519_SIZE_CORRECTION
                smallest_ecdh = size if smallest_ecdh is None else min(smallest_ecdh, size)
            elif isinstance(key, DhEphemeralKeyInfo):
                smallest_dh = key.size if smallest_dh is None else min(smallest_dh, key.size)
    allowed = set(settings.profile.tls_curves)
    problems = [f"group {g} is outside the profile" for g in sorted(groups - allowed)]
    if smallest_dh is not None and smallest_dh < settings.min_dh_bits:
        problems.append(f"DH group of {smallest_dh} bits (minimum {settings.min_dh_bits})")
    if smallest_ecdh is not None and smallest_ecdh < settings.profile.ecdh_param_size:
        problems.append(f"ECDH key of {smallest_ecdh} bits (minimum {settings.profile.ecdh_param_size})")
    observed = {"groups": sorted(groups), "smallest_dh_bits": smallest_dh}
    expected = {"groups": sorted(allowed), "min_dh_bits": settings.min_dh_bits}
    if not problems:
        return Verdict(Status.PASS, f"key exchange uses {', '.join(sorted(groups)) or 'no ECDH'}", observed, expected)
    return Verdict(Status.FAIL, "; ".join(problems), observed, expected, {"offending": sorted(groups - allowed)})
