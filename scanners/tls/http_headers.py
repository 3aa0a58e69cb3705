"""One ``GET /`` over TLS with http.client, keeping only the response headers the controls judge.

Only a fixed set of headers is kept, so cookies, tokens or anything else a server sends never
reach a finding. The certificate is not verified here: trust is TLS-006's job, and a server
with a bad certificate still has headers worth judging.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass, field

from scanners import __version__
from scanners.tls.probe import is_ip_address

KEPT_HEADERS = frozenset(
    {
        "server",
        "x-powered-by",
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
    }
)


@dataclass(frozen=True)
class HttpSnapshot:
    """The status and kept headers (lower-case names) of the response, or why there is none."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _lenient_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def fetch_headers(ip: str, port: int, server_name: str | None, timeout: float) -> HttpSnapshot:
    """GET / from ``ip:port``, sending ``server_name`` as SNI and Host."""
    host = server_name or ip
    try:
        raw = socket.create_connection((ip, port), timeout=timeout)
    except OSError as exc:
        return HttpSnapshot(error=f"cannot connect for GET /: {exc.strerror or exc}")
    try:
        tls = _lenient_context().wrap_socket(raw, server_hostname=None if is_ip_address(host) else host)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        return HttpSnapshot(error=f"TLS handshake for GET / failed: {getattr(exc, 'reason', None) or exc}")
    connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    connection.sock = tls  # already connected to the address we chose, not to what ``host`` resolves to
    try:
        connection.request("GET", "/", headers={"User-Agent": f"preaudit/{__version__}", "Accept": "*/*"})
        response = connection.getresponse()
        kept: dict[str, str] = {}
        for name, value in response.getheaders():
            if name.lower() in KEPT_HEADERS and name.lower() not in kept:
                kept[name.lower()] = value.strip()
        return HttpSnapshot(status=response.status, headers=kept)
    except (OSError, http.client.HTTPException) as exc:
        return HttpSnapshot(error=f"no valid HTTP response to GET /: {type(exc).__name__}")
    finally:
        connection.close()
