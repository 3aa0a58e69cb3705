"""Does an endpoint speak TLS at all? One ClientHello, one look at the answer, within a deadline.

sslyze retries every protocol version with its own timeouts before it gives up on an endpoint
that is silent or speaks something else (about eleven attempts), and it reports results only
after every endpoint's connectivity test ended. This probe sorts those endpoints out first, so
each ends within the scan timeout with a message that says what is wrong.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass

from scanners.scanning import TlsEndpoint

# Record types a TLS server answers a ClientHello with: handshake (22) or alert (21).
_TLS_RECORD_TYPES = (0x15, 0x16)
_RECORD_HEADER_LEN = 5


@dataclass(frozen=True)
class ProbeResult:
    """``ip`` is set when the endpoint answered like a TLS server; otherwise ``error`` says why not."""

    ip: str | None = None
    error: str | None = None


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def resolve(address: str, port: int) -> str:
    """One IP address for ``address``, IPv4 preferred (as sslyze does). Raises OSError."""
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    for family, _type, _proto, _name, sockaddr in infos:
        if family == socket.AF_INET:
            return str(sockaddr[0])
    return str(infos[0][4][0])


def client_hello(server_name: str | None) -> bytes:
    """The bytes of a ClientHello offering everything, made by the ssl module without a socket."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sni = server_name if server_name and not is_ip_address(server_name) else None
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    # Raises SSLWantReadError once the hello is written and the handshake waits for a server.
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def describe_answer(first_bytes: bytes) -> str | None:
    """None when ``first_bytes`` start a TLS (or SSL 2.0) record; else what the endpoint seems to be."""
    if first_bytes[:1] and (first_bytes[0] in _TLS_RECORD_TYPES or first_bytes[0] & 0x80):
        return None
    if first_bytes.startswith(b"SSH-"):
        return "not TLS: it answered with an SSH banner"
    if first_bytes.startswith(b"HTTP/"):
        return "not TLS: it answered in plain HTTP"
    return "not TLS: its answer is not a TLS record"


def _read_answer(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while len(data) < _RECORD_HEADER_LEN:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(_RECORD_HEADER_LEN - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_tls(endpoint: TlsEndpoint, timeout: float) -> ProbeResult:
    """Connect, send a ClientHello and classify the first bytes of the answer, all within ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        ip = resolve(endpoint.address, endpoint.port)
    except (OSError, UnicodeError):
        return ProbeResult(error=f"cannot resolve {endpoint.address}")
    try:
        sock = socket.create_connection((ip, endpoint.port), timeout=timeout)
    except ConnectionRefusedError:
        return ProbeResult(error=f"connection to {ip}:{endpoint.port} refused")
    except TimeoutError:
        return ProbeResult(error=f"no TCP connection to {ip}:{endpoint.port} within {timeout:g} s")
    except OSError as exc:
        return ProbeResult(error=f"cannot connect to {ip}:{endpoint.port}: {exc.strerror or exc}")
    with sock:
        try:
            sock.sendall(client_hello(endpoint.server_name or endpoint.address))
            answer = _read_answer(sock, deadline)
        except TimeoutError:
            return ProbeResult(error=f"accepted the connection but sent no TLS answer within {timeout:g} s")
        except OSError as exc:
            return ProbeResult(error=f"connection failed during the TLS handshake: {exc.strerror or exc}")
    if not answer:
        return ProbeResult(error="closed the connection without answering the TLS handshake")
    problem = describe_answer(answer)
    return ProbeResult(ip=ip) if problem is None else ProbeResult(error=problem)
