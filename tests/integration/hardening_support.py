"""Helpers of the TLS and secrets hardening tests: a real TLS client, host snapshots, run events.

Secret values read from a host stay in local variables: helpers return booleans, hashes or
names, so that a failing assertion never prints a secret.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scanners.ansible_run import RunResult
from tests.integration.conftest import Lab

ENV_FILE = "/opt/montecarlo/.env"
KEY_FILE = "/etc/ssl/montecarlo/server.key"
CERT_FILE = "/etc/ssl/montecarlo/server.crt"
SITE_FILE = "/etc/nginx/sites-available/montecarlo"
OUR_ROLES = ("tls_hardening", "secrets_hardening")


def tls_connects(
    port: int,
    *,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    server_name: str | None = None,
    cafile: Path | None = None,
) -> bool:
    """True when a TLS handshake with 127.0.0.1:port completes under the given client limits."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(cafile))
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if version is not None:
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is what is tested
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as _tls,
        ):
            return True
    except (ssl.SSLError, OSError):
        return False


def response_head(port: int, path: str = "/health", host: str = "montecarlo.lab") -> dict[str, str]:
    """Status line (key ':status') and lower-cased headers of one HTTPS response."""
    context = ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    head = {":status": lines[0]}
    for line in lines[1:]:
        name, _sep, value = line.partition(":")
        head[name.strip().lower()] = value.strip()
    return head


def env_values(lab: Lab, name: str) -> dict[str, str]:
    """The environment file's assignments, read on the host as root (never print the result)."""
    text = lab.host(name).check_output(f"cat {ENV_FILE}")
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _sep, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def snapshot(lab: Lab, name: str, paths: Iterable[str]) -> dict[str, str]:
    """Mode, owner and content hash of each path (or 'absent'), as the host has them."""
    host = lab.host(name)
    state = {}
    for path in paths:
        result = host.run(f"stat -c '%a %U:%G' {path} && sha256sum {path} | cut -d' ' -f1")
        state[path] = " ".join(result.stdout.split()) if result.rc == 0 else "absent"
    return state


def events(run: RunResult) -> list[dict[str, Any]]:
    """Every event ansible-runner recorded for the run (job_events/*.json)."""
    found = []
    for path in sorted((run.artifact_dir / "job_events").glob("*.json")):
        found.append(json.loads(path.read_text()))
    return found


def changed_tasks(run: RunResult, roles: Iterable[str] = OUR_ROLES) -> list[str]:
    """'role: task' of every change the named roles made in the run (handlers included).

    Read from the run's output: ansible-runner's events of a no_log task keep no 'changed' flag.
    """
    wanted = set(roles)
    changed = []
    current = None
    for line in run.stdout.splitlines():
        match = re.match(r"^(?:TASK|RUNNING HANDLER) \[(?:(\w+) : )?(.*)\] \**$", line)
        if match:
            current = (match.group(1), match.group(2))
        elif line.startswith("changed: [") and current and current[0] in wanted:
            changed.append(f"{current[0]}: {current[1]}")
    return sorted(set(changed))


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
