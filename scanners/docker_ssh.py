"""Reach a remote host's Docker Engine socket over SSH, with the inventory's connection data.

`ssh -L local.sock:/var/run/docker.sock` needs the SSH user to be allowed on the socket (root or
the docker group, which is root-equivalent) and stream-local forwarding enabled in sshd, which
SSH hardening turns off (``DisableForwarding yes``). So instead each connection the Docker SDK
opens to a local socket (in the scan's private directory) is relayed through one SSH session
running a few lines of Python on the host, with the inventory's privilege escalation
(``sudo -n``): no forwarding, no group membership, nothing installed on the host. SSH sessions
share one master connection (``ControlMaster``) that is closed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from scanners.errors import PreauditError
from scanners.host_scan import InventoryHost

REMOTE_SOCKET = "/var/run/docker.sock"
# Runs on the host: copy stdin to the engine's socket and the socket to stdout.
RELAY = """
import os, socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def up():
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            s.sendall(data)
    finally:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
threading.Thread(target=up, daemon=True).start()
out = sys.stdout.buffer
while True:
    data = s.recv(65536)
    if not data:
        break
    out.write(data)
    out.flush()
"""


class DockerSshError(PreauditError):
    """The host's engine socket cannot be reached over SSH."""


def ssh_base(host: InventoryHost, control_path: Path, timeout: float) -> list[str]:
    """ssh arguments (up to the destination) from the host's inventory variables."""
    values = host.vars
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}"]
    if values.get("ansible_port"):
        argv += ["-p", str(values["ansible_port"])]
    key = values.get("ansible_ssh_private_key_file") or values.get("ansible_private_key_file")
    if key:
        argv += ["-i", str(key)]
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if values.get(name):
            argv += shlex.split(str(values[name]))
    argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}", "-o", "ControlPersist=60"]
    user = values.get("ansible_user") or values.get("ansible_ssh_user")
    argv.append(f"{user}@{host.address}" if user else host.address)
    return argv


def remote_command(host: InventoryHost, argv: list[str]) -> str:
    become = bool(host.vars.get("ansible_become")) and str(host.vars.get("ansible_become_user") or "root") == "root"
    prefix = ["sudo", "-n"] if become else []
    return " ".join(shlex.quote(a) for a in prefix + argv)


class _Relay:
    def __init__(self, host: InventoryHost, local: Path, base: list[str]) -> None:
        python = str(host.vars.get("ansible_python_interpreter") or "python3")
        self.command = [*base, remote_command(host, [python, "-c", RELAY, REMOTE_SOCKET])]
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(local))
        local.chmod(0o600)
        self.server.listen(16)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            with self.lock:
                self.procs.append(proc)
            assert proc.stdin is not None and proc.stdout is not None
            threading.Thread(target=self._upstream, args=(client, proc.stdin), daemon=True).start()
            threading.Thread(target=self._downstream, args=(client, proc), daemon=True).start()

    @staticmethod
    def _upstream(client: socket.socket, sink: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while data := client.recv(65536):
                sink.write(data)
                sink.flush()
        with contextlib.suppress(OSError, ValueError):
            sink.close()

    @staticmethod
    def _downstream(client: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while data := os.read(proc.stdout.fileno(), 65536):
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.close()
        with contextlib.suppress(OSError):
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.server.close()
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


@contextlib.contextmanager
def forwarded_docker_socket(host: InventoryHost, workdir: Path, *, timeout: float = 10.0) -> Iterator[str]:
    """A ``unix://`` URL on the controller that reaches ``host``'s Docker Engine for the duration."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in host.name)[:40]
    control = workdir / f"ssh-{safe}"
    base = ssh_base(host, control, timeout)
    check = subprocess.run(
        [*base, remote_command(host, ["test", "-S", REMOTE_SOCKET])],
        capture_output=True,
        text=True,
        timeout=timeout * 3,
        check=False,
    )
    if check.returncode != 0:
        detail = (check.stderr.strip().splitlines() or [f"exit {check.returncode}"])[-1]
        raise DockerSshError(
            f"{host.name}: no Docker Engine socket {REMOTE_SOCKET} reachable over SSH "
            f"(with the inventory's privilege escalation): {detail}"
        )
    local = workdir / f"docker-{safe}.sock"
    relay = _Relay(host, local, base)
    try:
        yield f"unix://{local}"
    finally:
        relay.close()
        local.unlink(missing_ok=True)
        subprocess.run([*base[:-1], "-O", "exit", base[-1]], capture_output=True, timeout=10, check=False)
