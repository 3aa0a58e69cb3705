"""The check behind each TLS control, by the ``property`` its catalog entry names."""

from __future__ import annotations

from collections.abc import Callable

from scanners.tls import checks_certificate, checks_http, checks_protocol, checks_weaknesses
from scanners.tls.observation import Observation, Verdict

Check = Callable[[Observation], Verdict]

CHECKS: dict[str, Check] = {
    "protocol_versions": checks_protocol.check_protocol_versions,
    "cipher_suites": checks_protocol.check_cipher_suites,
    "key_exchange_groups": checks_protocol.check_key_exchange_groups,
    "hsts": checks_http.check_hsts,
    "certificate_validity": checks_certificate.check_certificate_validity,
    "certificate_trust": checks_certificate.check_trust,
    "certificate_key": checks_certificate.check_certificate_key,
    "certificate_signature": checks_certificate.check_certificate_signature,
    "compression": checks_weaknesses.check_compression,
    "renegotiation": checks_weaknesses.check_renegotiation,
    "heartbleed": checks_weaknesses.check_heartbleed,
    "robot": checks_weaknesses.check_robot,
    "ocsp_stapling": checks_certificate.check_ocsp_stapling,
    "fallback_scsv": checks_weaknesses.check_fallback_scsv,
    "security_headers": checks_http.check_security_headers,
    "version_disclosure": checks_http.check_version_disclosure,
}
