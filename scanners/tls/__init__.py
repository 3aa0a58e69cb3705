"""The TLS scanner: sslyze against each endpoint, judged against the Mozilla TLS profile (TLS-001 to TLS-016)."""

from scanners.tls.scanner import SCANNER, scan_tls

__all__ = ["SCANNER", "scan_tls"]
