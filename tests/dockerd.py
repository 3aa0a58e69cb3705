"""A real Docker Engine for tests: Debian's dockerd on its own directories and unix socket.

``running_dockerd()`` starts ``dockerd`` as root with its own ``--data-root``, ``--exec-root``,
``--pidfile`` and ``-H unix://<workdir>/docker.sock`` (never TCP), waits until it answers, and
on exit (success, failure or Ctrl-C) removes its containers, stops it and the containerd and
shims it started, unmounts what it mounted and deletes its directory. ``leftovers()`` lists
anything that survived, so a test can prove nothing was left behind.

Networking: by default dockerd creates a docker0 bridge, iptables/NAT rules and turns on IP
forwarding on the machine it runs on. The harness passes ``--iptables=false --ip-masq=false
--bridge=none --ip-forward=false`` so that a test engine changes nothing in the controller's
network configuration; containers run with ``network_mode="none"`` (or "host"). The default
bridge's icc setting therefore cannot be observed through this harness.

A ``config_file`` (dockerd ``--config-file``, e.g. the daemon.json a role writes) may not set:
- the keys in ``HARNESS_OWNED_KEYS``: the harness sets them as flags, and dockerd refuses a
  directive given both ways;
- the keys in ``NEEDS_NETWORKING``: ``icc: false`` needs iptables ("ICC=false uses iptables to
  function") and ``bip``/``fixed-cidr``/``default-gateway`` need the default bridge.
``harness_config()`` removes both and returns what it removed. One more key works but changes
the machine running dockerd: ``userns-remap: default`` creates the ``dockremap`` user and its
/etc/subuid and /etc/subgid entries.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from scanners.lab.processes import start_ticks

# daemon.json keys the harness sets as dockerd flags (dockerd refuses a directive given twice).
HARNESS_OWNED_KEYS = frozenset(
    {"hosts", "data-root", "exec-root", "pidfile", "bridge", "iptables", "ip-masq", "ip-forward"}
)
# daemon.json keys that cannot work without the bridge and iptables the harness turns off.
NEEDS_NETWORKING = frozenset(
    {"icc", "bip", "fixed-cidr", "fixed-cidr-v6", "default-gateway", "default-gateway-v6", "ip6tables"}
)
WORKDIR_PREFIX = "preaudit-dockerd-"
# containerd shims put their sockets here whatever containerd's own state directory is.
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))
# A unix socket path must fit in sockaddr_un (108 bytes); containerd's is the longest we create.
_MAX_SOCKET_PATH = 100


def harness_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config`` without the keys the harness cannot take, and the removed keys with their values."""
    refused = HARNESS_OWNED_KEYS | NEEDS_NETWORKING
    kept = {k: v for k, v in config.items() if k not in refused}
    removed = {k: v for k, v in config.items() if k in refused}
    return kept, removed


def _process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _process_cgroups(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def _container_ids(workdir: Path) -> list[str]:
    """The engine's containers, from its data root: works even when dockerd no longer answers."""
    containers = workdir / "data" / "containers"
    return [p.name for p in containers.iterdir() if p.is_dir()] if containers.is_dir() else []


def _our_processes(workdir: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Processes this engine started: dockerd, its containerd and shims (our paths on their command
    line), and container processes (in a cgroup named after one of our container ids)."""
    ids = _container_ids(workdir)
    marker = str(workdir)
    engine: list[tuple[int, str]] = []
    containers: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmdline = _process_cmdline(pid)
        if marker in cmdline:
            engine.append((pid, cmdline))
        elif ids and any(cid in _process_cgroups(pid) for cid in ids):
            containers.append((pid, cmdline))
    return engine, containers


def _our_mounts(workdir: Path) -> list[str]:
    marker = str(workdir)
    mounts: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == marker or point.startswith(marker + "/"):
            mounts.append(point)
    return mounts


def leftovers(workdir: Path) -> list[str]:
    """Everything of this engine still on the machine: processes, mounts, its directory."""
    engine, containers = _our_processes(workdir)
    found = [f"process {pid}: {cmd}" for pid, cmd in engine + containers]
    found += [f"mount {m}" for m in _our_mounts(workdir)]
    if workdir.exists():
        found.append(f"directory {workdir}")
    return found


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        alive = [p for p in alive if start_ticks(p) is not None]
        if alive:
            time.sleep(0.1)
    return alive


def clean_up(workdir: Path, created_shim_dirs: tuple[Path, ...] = ()) -> None:
    """Stop whatever the engine in ``workdir`` left running, unmount its mounts, delete the directory."""
    engine, containers = _our_processes(workdir)
    # Container processes are disposable: SIGKILL (a sleeping PID 1 ignores SIGTERM). The engine's
    # own processes get a chance to shut down cleanly first.
    for pid, _ in containers:
        _kill(pid, signal.SIGKILL)
    for pid, _ in engine:
        _kill(pid, signal.SIGTERM)
    for pid in _wait_gone([p for p, _ in engine], 15):
        _kill(pid, signal.SIGKILL)
    _wait_gone([p for p, _ in engine + containers], 10)
    for point in sorted(_our_mounts(workdir), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    for directory in created_shim_dirs:
        # Only if empty: another engine on the machine may be using it by now.
        with contextlib.suppress(OSError):
            directory.rmdir()
    if not _our_mounts(workdir):
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Dockerd:
    workdir: Path
    process: subprocess.Popen[bytes]
    created_shim_dirs: tuple[Path, ...] = ()
    _stopped: bool = field(default=False, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> str:
        path = self.workdir / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, timeout: float = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.base_url, timeout=timeout)

    def stop(self) -> None:
        """Remove the containers, stop dockerd, and clean up what it left. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            # Removing containers first makes shutdown quick and covers live-restore, with which
            # dockerd would leave them running.
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException, OSError):
                client = self.client(timeout=20)
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                client.close()
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        clean_up(self.workdir, self.created_shim_dirs)


def _dockerd_binary() -> str:
    binary = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise RuntimeError("dockerd not found: install Debian's docker.io (scripts/setup.sh does)")
    return binary


def start_dockerd(workdir: Path, *, config_file: Path | None = None, timeout: float = 90) -> Dockerd:
    """Start dockerd on ``workdir`` (the engine's own directory, deleted by ``stop()``) and wait until it answers."""
    binary = _dockerd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        config_file = _checked_config(workdir, config_file)
    except ValueError:
        clean_up(workdir)
        raise
    created = tuple(d for d in SHIM_SOCKET_DIRS if not d.exists())
    argv = [
        binary,
        "--data-root",
        str(workdir / "data"),
        "--exec-root",
        str(workdir / "exec"),
        "--pidfile",
        str(workdir / "docker.pid"),
        "-H",
        f"unix://{workdir / 'docker.sock'}",
        "--config-file",
        str(config_file),
        # No docker0 bridge, no iptables/NAT rules and no forwarding sysctl on the machine
        # running the tests.
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--ip-forward=false",
    ]
    with (workdir / "dockerd.log").open("wb") as log:
        # Own session: a Ctrl-C of the test run reaches pytest, whose teardown stops dockerd in order.
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = Dockerd(workdir, process, created)
    try:
        _wait_until_answering(engine, timeout)
    except BaseException:
        engine.stop()
        raise
    return engine


def _checked_config(workdir: Path, config_file: Path | None) -> Path:
    containerd_socket = workdir / "exec" / "containerd" / "containerd.sock"
    if len(str(containerd_socket)) > _MAX_SOCKET_PATH:
        raise ValueError(f"{workdir}: path too long for the engine's unix sockets; use a shorter directory")
    if config_file is None:
        config_file = workdir / "daemon.json"
        # Always pass a file: without --config-file dockerd would read the machine's /etc/docker/daemon.json.
        config_file.write_text("{}\n")
        return config_file
    clashing = sorted(set(json.loads(config_file.read_text())) & (HARNESS_OWNED_KEYS | NEEDS_NETWORKING))
    if clashing:
        raise ValueError(
            f"{config_file}: remove {', '.join(clashing)} (set by the harness or needing the networking "
            "it turns off); see harness_config()"
        )
    return config_file


def _wait_until_answering(engine: Dockerd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            tail = "\n".join(engine.log.splitlines()[-15:])
            raise RuntimeError(f"dockerd exited with {engine.process.returncode}:\n{tail}")
        if engine.socket.exists():
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException, OSError):
                client = engine.client(timeout=5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
        time.sleep(0.2)
    raise RuntimeError(f"dockerd did not answer within {timeout:g} s")


def new_workdir() -> Path:
    """A short, unique directory named after this process, so an abandoned one can be recognised."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def reclaim_abandoned() -> list[Path]:
    """Clean up engines left by test runs that were killed (their owner process is gone)."""
    reclaimed: list[Path] = []
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        owner = workdir.name.removeprefix(WORKDIR_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or start_ticks(int(owner)) is not None:
            continue  # a live run (maybe another engineer's) owns it
        clean_up(workdir)
        reclaimed.append(workdir)
    return reclaimed


@contextlib.contextmanager
def running_dockerd(config_file: Path | None = None) -> Iterator[Dockerd]:
    engine = start_dockerd(new_workdir(), config_file=config_file)
    try:
        yield engine
    finally:
        engine.stop()


# --- an image without a registry ------------------------------------------------------------

BUSYBOX_APPLETS = ("sh", "sleep", "id", "cat", "true", "ls")


def busybox_rootfs_tar(dest: Path) -> Path:
    """A minimal root filesystem (Debian's static busybox plus applet links) as a tarball for `docker import`."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox not found: install Debian's busybox-static (scripts/setup.sh does)")
    with tarfile.open(dest, "w") as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("run", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest


def import_image(client: docker.DockerClient, tarball: Path, repository: str, tag: str) -> str:
    """`docker import` through the Engine API; returns the image id."""
    client.api.import_image(src=str(tarball), repository=repository, tag=tag)
    image_id: str = client.images.get(f"{repository}:{tag}").id
    return image_id
