"""TLS-004, TLS-015 and TLS-016: what the HTTPS response headers say."""

from __future__ import annotations

import re

from scanners.findings import Status
from scanners.tls.observation import CheckError, Observation, Verdict, completed

# Policies that never send a full URL to another origin; unsafe-url and no-referrer-when-downgrade do.
SAFE_REFERRER_POLICIES = frozenset(
    {
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
        "origin",
        "origin-when-cross-origin",
    }
)
FRAME_OPTIONS = frozenset({"deny", "sameorigin"})
VERSION_HEADERS = ("server", "x-powered-by")
# A product version: "nginx/1.22.1", "Apache/2.4", "PHP 8.1.2".
_VERSION = re.compile(r"(/\s*v?\d)|(\b\d+\.\d+)")
_FRAME_ANCESTORS = re.compile(r"(^|;)\s*frame-ancestors\s", re.IGNORECASE)


def check_hsts(obs: Observation) -> Verdict:
    result = completed(obs.attempts.http_headers, "the HTTP headers")
    if result.http_error_trace is not None:
        raise CheckError(f"no valid HTTP response to sslyze's GET /: {result.http_error_trace}")
    minimum = obs.settings.hsts_min_age
    expected = {"max_age_at_least": minimum}
    header = result.strict_transport_security_header
    if header is None:
        return Verdict(Status.FAIL, "no Strict-Transport-Security header", None, expected)
    observed = {"max_age": header.max_age, "include_subdomains": header.include_subdomains, "preload": header.preload}
    if header.max_age is None or header.max_age < minimum:
        return Verdict(Status.FAIL, f"HSTS max-age is {header.max_age} (minimum {minimum})", observed, expected)
    return Verdict(Status.PASS, f"HSTS max-age is {header.max_age}", observed, expected)


def _http_headers(obs: Observation) -> dict[str, str]:
    if obs.http.error is not None:
        raise CheckError(obs.http.error)
    return obs.http.headers


def check_security_headers(obs: Observation) -> Verdict:
    headers = _http_headers(obs)
    nosniff = headers.get("x-content-type-options")
    frame_options = headers.get("x-frame-options")
    csp = headers.get("content-security-policy")
    referrer = headers.get("referrer-policy")
    missing = []
    if (nosniff or "").lower() != "nosniff":
        missing.append("X-Content-Type-Options: nosniff")
    if (frame_options or "").lower() not in FRAME_OPTIONS and not (csp and _FRAME_ANCESTORS.search(csp)):
        missing.append("X-Frame-Options (DENY or SAMEORIGIN) or CSP frame-ancestors")
    # The last policy the browser understands wins; a list is a fallback chain.
    policy = (referrer or "").split(",")[-1].strip().lower()
    if policy not in SAFE_REFERRER_POLICIES:
        missing.append("a Referrer-Policy that keeps full URLs on this origin")
    observed = {
        "x-content-type-options": nosniff,
        "x-frame-options": frame_options,
        "content-security-policy": csp,
        "referrer-policy": referrer,
    }
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options or csp frame-ancestors": "DENY, SAMEORIGIN or frame-ancestors",
        "referrer-policy": sorted(SAFE_REFERRER_POLICIES),
    }
    if missing:
        return Verdict(Status.FAIL, f"missing {'; '.join(missing)}", observed, expected, {"missing": missing})
    return Verdict(Status.PASS, "nosniff, framing policy and Referrer-Policy are sent", observed, expected)


def check_version_disclosure(obs: Observation) -> Verdict:
    headers = _http_headers(obs)
    observed = {name: headers.get(name) for name in VERSION_HEADERS}
    disclosing = [f"{name}: {value}" for name, value in observed.items() if value and _VERSION.search(value)]
    expected = "no version in Server or X-Powered-By"
    if disclosing:
        return Verdict(Status.FAIL, f"discloses its version ({'; '.join(disclosing)})", observed, expected)
    return Verdict(Status.PASS, f"Server header is {observed['server']!r}", observed, expected)
