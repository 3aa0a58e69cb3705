"""Real nginx TLS servers on loopback for tests, each in its own process and prefix directory.

``running_nginx_servers`` starts one ``nginx -p DIR`` per server spec on a free 127.0.0.1 port
(``daemon off; master_process off;``, so the process we start is the whole server and stopping
it stops everything), waits until each accepts connections, and stops them all on exit, also
when a test fails or is interrupted. ``standard_tls_servers`` is the set the TLS scanner's tests
assert exact findings for; ``tls_test_servers`` is a session fixture around it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scanners.scanning import TlsEndpoint
from tests.tls_pki import TEST_OCSP_URL, KeyPair, TestCa, self_signed_without_san

NAME_SUFFIX = ".preaudit.test"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# The lab image's nginx site (scanners/lab/image/files/etc/nginx/sites-available/montecarlo).
LAB_WEAK_DIRECTIVES = (
    "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;",
    "ssl_ciphers ALL:@SECLEVEL=0;",
    "ssl_prefer_server_ciphers off;",
)
# Mozilla intermediate for nginx 1.22 / OpenSSL 3 (ssl-config.mozilla.org), ECDHE suites only.
MOZILLA_INTERMEDIATE_DIRECTIVES = (
    "ssl_protocols TLSv1.2 TLSv1.3;",
    "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
    "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;",
    "ssl_prefer_server_ciphers off;",
    "ssl_session_timeout 1d;",
    "ssl_session_cache shared:MozSSL:1m;",
    "ssl_session_tickets off;",
)
HARDENED_HEADER_DIRECTIVES = (
    "server_tokens off;",
    'add_header Strict-Transport-Security "max-age=63072000" always;',
    "add_header X-Content-Type-Options nosniff always;",
    "add_header X-Frame-Options DENY always;",
    "add_header Referrer-Policy no-referrer always;",
)
HARDENED_DIRECTIVES = MOZILLA_INTERMEDIATE_DIRECTIVES + HARDENED_HEADER_DIRECTIVES

# Lets one process load keys and signatures that OpenSSL 3's default security level refuses
# (RSA 1024, SHA-1); nginx loads certificates before it applies ssl_ciphers' @SECLEVEL.
_LEGACY_OPENSSL_CONF = """\
openssl_conf = preaudit_test
[preaudit_test]
ssl_conf = ssl_section
[ssl_section]
system_default = system_default_section
[system_default_section]
CipherString = DEFAULT:@SECLEVEL=0
"""


@dataclass(frozen=True)
class ServerSpec:
    """One server: its certificate (None: plain HTTP), its directives and whether it needs legacy OpenSSL."""

    name: str
    keypair: KeyPair | None
    directives: Sequence[str] = ()
    legacy_openssl: bool = False
    stapling_file: Path | None = None

    @property
    def server_name(self) -> str:
        return f"{self.name}{NAME_SUFFIX}"


@dataclass(frozen=True)
class RunningServer:
    spec: ServerSpec
    port: int
    prefix: Path

    @property
    def server_name(self) -> str:
        return self.spec.server_name

    def endpoint(self, host: str | None = "testhost") -> TlsEndpoint:
        return TlsEndpoint(address="127.0.0.1", port=self.port, server_name=self.server_name, host=host)

    def error_log(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""


@dataclass
class TlsTestServers:
    """The running servers by name, and the CA file that trusts the CA-issued ones."""

    servers: Mapping[str, RunningServer]
    ca_file: Path
    extra: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> RunningServer:
        return self.servers[name]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(spec: ServerSpec, prefix: Path, port: int) -> str:
    temp = prefix / "temp"
    lines = [
        "daemon off;",
        "master_process off;",
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 256; }",
        "http {",
        "  access_log off;",
        "  default_type text/plain;",
        *(f"  {kind}_temp_path {temp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        "  server {",
        f"    listen 127.0.0.1:{port}{' ssl' if spec.keypair else ''};",
        f"    server_name {spec.server_name};",
    ]
    if spec.keypair:
        lines += [f"    ssl_certificate {spec.keypair.cert_file};", f"    ssl_certificate_key {spec.keypair.key_file};"]
    if spec.stapling_file:
        lines += ["    ssl_stapling on;", f"    ssl_stapling_file {spec.stapling_file};"]
    lines += [f"    {directive}" for directive in spec.directives]
    lines += [f'    location / {{ return 200 "preaudit test server {spec.name}\\n"; }}', "  }", "}"]
    return "\n".join(lines) + "\n"


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _start(spec: ServerSpec, prefix: Path, processes: list[subprocess.Popen[bytes]]) -> RunningServer:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.fail("nginx is not installed: run ./scripts/setup.sh (Debian package nginx)")
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if spec.legacy_openssl:
        openssl_conf = prefix / "openssl.cnf"
        openssl_conf.write_text(_LEGACY_OPENSSL_CONF)
        env["OPENSSL_CONF"] = str(openssl_conf)
    last_log = ""
    # Another process may take the free port between our probe and nginx's bind: try a new one.
    for _attempt in range(3):
        port = free_port()
        (prefix / "nginx.conf").write_text(_config(spec, prefix, port))
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        if _wait_until_listening(process, port, time.monotonic() + START_TIMEOUT):
            return RunningServer(spec, port, prefix)
        _stop(process)
        last_log = (prefix / "error.log").read_text(errors="replace") if (prefix / "error.log").exists() else ""
        if "Address already in use" not in last_log:
            break
    pytest.fail(f"nginx test server {spec.name} did not start: {last_log.strip().splitlines()[-1:]}")


@contextlib.contextmanager
def running_nginx_servers(specs: Sequence[ServerSpec], workdir: Path) -> Iterator[dict[str, RunningServer]]:
    """Start every spec, yield them by name, and stop every process started, whatever happens."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        servers = {spec.name: _start(spec, workdir / spec.name, processes) for spec in specs}
        yield servers
    finally:
        for process in processes:
            _stop(process)


def standard_server_specs(pki_dir: Path) -> tuple[list[ServerSpec], TestCa]:
    """The servers whose scan results the TLS tests assert exactly (see tests/integration/test_tls_scanner.py)."""
    ca = TestCa(pki_dir)

    def name(server: str) -> str:
        return f"{server}{NAME_SUFFIX}"

    hardened_pair = ca.issue("hardened", [name("hardened")], ocsp_url=TEST_OCSP_URL)
    unstapled_pair = ca.issue("no-stapling", [name("no-stapling")], ocsp_url=TEST_OCSP_URL)
    specs = [
        ServerSpec("weak", self_signed_without_san(pki_dir, "weak", "montecarlo.lab"), LAB_WEAK_DIRECTIVES),
        ServerSpec(
            "hardened",
            hardened_pair,
            HARDENED_DIRECTIVES,
            stapling_file=ca.ocsp_response(hardened_pair.certificate, pki_dir / "hardened.ocsp.der"),
        ),
        ServerSpec("expired", ca.issue("expired", [name("expired")], valid_days=(-120, -10)), HARDENED_DIRECTIVES),
        ServerSpec("wrong-name", ca.issue("wrong-name", ["other" + NAME_SUFFIX]), HARDENED_DIRECTIVES),
        ServerSpec("sha1", ca.issue_sha1("sha1", [name("sha1")]), HARDENED_DIRECTIVES, legacy_openssl=True),
        ServerSpec(
            "weak-key",
            ca.issue("weak-key", [name("weak-key")], key_kind="rsa1024"),
            HARDENED_DIRECTIVES,
            legacy_openssl=True,
        ),
        ServerSpec("no-stapling", unstapled_pair, HARDENED_DIRECTIVES),
        ServerSpec(
            "tls13-only",
            ca.issue("tls13-only", [name("tls13-only")]),
            (*(d for d in HARDENED_DIRECTIVES if not d.startswith("ssl_protocols")), "ssl_protocols TLSv1.3;"),
        ),
        ServerSpec("plain-http", None),
    ]
    return specs, ca


@pytest.fixture(scope="session")
def tls_test_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsTestServers]:
    """Every standard server running for the whole session; all stopped at its end."""
    workdir = tmp_path_factory.mktemp("tls-servers")
    specs, ca = standard_server_specs(workdir / "pki")
    with running_nginx_servers(specs, workdir / "nginx") as servers:
        yield TlsTestServers(servers, ca.ca_file)
