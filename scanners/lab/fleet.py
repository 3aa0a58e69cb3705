"""Boot, inspect and stop the lab's simulation hosts.

Each host boots the cached image with systemd as PID 1, on one of the platforms a simulation host
runs on in production: a systemd-nspawn machine (the default), a Docker container, an LXC container
or a QEMU virtual machine. The nspawn and LXC hosts run on a copy-on-write overlay of the image; a
Docker host on the image imported into a Docker Engine; a VM on a disk made from the image with a
kernel added. A container host has a private network namespace joined to the controller by a veth
pair (``ve-<name>``, ``host0`` inside), a VM a tap link of the same name; SSH and HTTPS are exposed
on 127.0.0.1 by socat, so traffic reaches the host on a real, firewallable interface and never
leaves the machine. Each host is of an image variant (``lab``, the default, or ``minimal``), on any
platform.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from scanners.errors import EnvironmentProblem, InputError
from scanners.lab import docker_host, image, lxc_host, processes, vm_host
from scanners.lab.ca import ensure_ca
from scanners.lab.processes import ProcessRef
from scanners.lab.settings import LabSettings
from scanners.project import project_root

# 2: each host records its variant and the recipe hash of its image (version 1 had one image).
STATE_VERSION = 2
SUBNET = "10.213"
MAX_HOSTS = 32
BOOT_TIMEOUT = 90.0
# A VM without KVM emulates its CPU: its kernel, systemd and services start several times slower.
VM_BOOT_TIMEOUT = 420.0
PLATFORMS = ("nspawn", "docker", "lxc", "vm")
Progress = Callable[[str], None]


@dataclass(slots=True)
class HostState:
    name: str
    slot: int
    ssh_port: int
    https_port: int
    root: str
    # The host's process on the controller: systemd-nspawn, lxc-start, or a Docker host's init.
    nspawn: dict[str, int] | None = None
    # The host's init (systemd, PID 1 inside): it outlives an nspawn that was killed.
    leader: dict[str, int] | None = None
    forwarders: list[dict[str, int]] = field(default_factory=list)
    platform: str = "nspawn"
    variant: str = image.DEFAULT_VARIANT
    # Recipe hash of the image the host's disk was made from.
    image: str = ""

    @property
    def container_name(self) -> str:
        """The Docker container of a Docker host."""
        return f"preaudit-lab-{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.slot}.2"

    @property
    def gateway(self) -> str:
        return f"{SUBNET}.{self.slot}.1"

    @property
    def host_dir(self) -> Path:
        return Path(self.root).parent

    def process(self) -> ProcessRef | None:
        return ProcessRef.from_dict(self.nspawn) if self.nspawn else None

    def running(self) -> bool:
        ref = self.process()
        return ref is not None and ref.alive()


@dataclass(slots=True)
class LabState:
    prefix: str = "sim"
    hosts: dict[str, HostState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"version": STATE_VERSION, "prefix": self.prefix,
             "hosts": {n: asdict(h) for n, h in sorted(self.hosts.items())}},
            indent=2,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> LabState:
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            # A version 1 state names one image for all its hosts, all of them of the lab variant.
            legacy = {"image": data.get("image", "")}
            hosts = {n: HostState(**{**legacy, **h}) for n, h in data.get("hosts", {}).items()}
        except (ValueError, TypeError, KeyError) as exc:
            raise EnvironmentProblem(
                f"lab state {path} is unreadable ({exc}); remove it and the lab directory"
            ) from None
        return cls(prefix=data.get("prefix", "sim"), hosts=hosts)


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _sh(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EnvironmentProblem(f"lab: {what} failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}")
    return result.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _used_slots() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False).stdout
    return {int(m.group(1)) for m in re.finditer(rf"inet {re.escape(SUBNET)}\.(\d+)\.1/", out)}


def _wait_ssh_banner(port: int, deadline: float, host_process: ProcessRef) -> None:
    while time.monotonic() < deadline:
        if not host_process.alive():
            raise EnvironmentProblem("the host stopped while booting (see its console.log)")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(3)
            if sock.recv(64).startswith(b"SSH-2.0"):
                return
        time.sleep(0.2)
    raise EnvironmentProblem(f"lab: no SSH banner on 127.0.0.1:{port} within {BOOT_TIMEOUT:.0f}s")


def _wait_tls(port: int, deadline: float, host_process: ProcessRef) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        if not host_process.alive():
            raise EnvironmentProblem("the host stopped while booting (see its console.log)")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw) as _tls,
        ):
            return
        time.sleep(0.2)
    raise EnvironmentProblem(f"lab: no TLS answer on 127.0.0.1:{port} within {BOOT_TIMEOUT:.0f}s")


def _gateway_link(host: HostState, link: str) -> None:
    """The controller's end of a host's link (veth peer or tap): the host's gateway address, up."""
    _sh(["ip", "addr", "replace", f"{host.gateway}/30", "dev", link], f"{host.name}: address {link}")
    _sh(["ip", "link", "set", link, "up"], f"{host.name}: link up")


def _passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    """The user's uid, gid and home directory (relative to ``root``) in the image's passwd."""
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2]), int(parts[3]), parts[5].lstrip("/")
    raise EnvironmentProblem(f"lab image has no user {user}")


def _wanted_hosts(prefix: str, count: int, platforms: list[str], variants: list[str]) -> dict[str, tuple[str, str]]:
    """Host name -> (platform, variant): host i takes the i-th of each list, in turn."""
    return {
        f"{prefix}-{i}": (platforms[(i - 1) % len(platforms)], variants[(i - 1) % len(variants)])
        for i in range(1, count + 1)
    }


def _check_choices(platforms: list[str], variants: list[str]) -> None:
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown:
        raise InputError(f"unknown lab platform(s) {', '.join(unknown)} (known: {', '.join(PLATFORMS)})")
    unknown = sorted(set(variants) - set(image.VARIANTS))
    if unknown:
        raise InputError(f"unknown lab variant(s) {', '.join(unknown)} (known: {', '.join(image.VARIANTS)})")


def _role_default(role: str, variable: str) -> Any:
    """A role's default value, read from its defaults file (the inventory extends some of them)."""
    defaults = project_root() / "roles" / role / "defaults" / "main.yml"
    try:
        return (yaml.safe_load(defaults.read_text()) or {}).get(variable)
    except (OSError, yaml.YAMLError) as exc:
        raise EnvironmentProblem(f"lab: cannot read {variable} from {defaults}: {exc}") from None


def _root_managed_vars() -> dict[str, Any]:
    """What a fleet managed as root must set for the SSH lockout preflight (SSH-001, SSH-019) to
    admit the account Ansible connects as: root keeps key logins, and each allow list the role sets
    by default also admits root (by its name, or by its only group, root). An empty list admits
    everyone and stays empty."""
    variables: dict[str, Any] = {"ansible_user": "root", "ssh_hardening_permit_root_login": "prohibit-password"}
    for kind in ("groups", "users"):
        name = f"ssh_hardening_allow_{kind}"
        default = list(_role_default("ssh_hardening", name) or [])
        if default:
            variables[name] = default if "root" in default else [*default, "root"]
    return variables


class Fleet:
    """The lab fleet described by a state file; every method is safe to call repeatedly."""

    ADMIN_USER = "ops"

    def __init__(self, settings: LabSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress or (lambda _msg: None)
        self._save_lock = threading.Lock()
        self._checkpoint: Callable[[], None] = lambda: None

    def _save(self, state: LabState) -> None:
        with self._save_lock:
            _atomic_write(self.settings.state_file, state.to_json())

    # -- locking and state -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[LabState]:
        self.settings.lab_dir.mkdir(parents=True, exist_ok=True)
        with (self.settings.lab_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            state = LabState.load(self.settings.state_file)
            try:
                yield state
            finally:
                _atomic_write(self.settings.state_file, state.to_json())
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        path = self.settings.image_cache / ".fleets.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def state(self) -> LabState:
        return LabState.load(self.settings.state_file)

    # -- public operations -------------------------------------------------------------------

    def up(self, count: int, platforms: list[str] | None = None, variants: list[str] | None = None) -> LabState:
        """Boot hosts PREFIX-1..count; host i runs on ``platforms[(i - 1) % len(platforms)]`` and is of
        the variant ``variants[(i - 1) % len(variants)]``."""
        if not 1 <= count <= MAX_HOSTS:
            raise InputError(f"--hosts must be between 1 and {MAX_HOSTS}, not {count}")
        platforms = platforms or ["nspawn"]
        variants = variants or [image.DEFAULT_VARIANT]
        _check_choices(platforms, variants)
        if os.geteuid() != 0:
            raise EnvironmentProblem("lab: booting hosts needs root (systemd-nspawn, mounts, veth); run with sudo")
        wanted = _wanted_hosts(self.settings.prefix, count, platforms, variants)
        used_variants = sorted({variant for _platform, variant in wanted.values()})
        rootfs = {v: image.ensure_image(self.settings, self.progress, v) for v in used_variants}
        self._ensure_ssh_key()
        # Labs of other users or test sessions share the machine's address space and interface
        # names: choosing slots and booting happens under one machine-wide lock.
        with self._machine_lock(), self._locked() as state:
            state.prefix = self.settings.prefix
            self._replace_unwanted(state, wanted)
            todo = [n for n in wanted if n not in state.hosts or not state.hosts[n].running()]
            taken = sorted(n for n in todo if n not in state.hosts and Path(f"/sys/class/net/ve-{n}").exists())
            if taken:
                raise InputError(
                    f"another lab already runs host(s) {', '.join(taken)}; use another --prefix or PREAUDIT_LAB_PREFIX"
                )
            used = _used_slots() | {h.slot for n, h in state.hosts.items() if n not in todo}
            for name in todo:
                if name in state.hosts:
                    self._stop_processes(state.hosts[name])
                else:
                    slot = next(s for s in range(1, 251) if s not in used)
                    used.add(slot)
                    platform, variant = wanted[name]
                    root = self.settings.hosts_dir / name / "root"
                    state.hosts[name] = HostState(
                        name, slot, _free_port(), _free_port(), str(root), platform=platform, variant=variant,
                        image=rootfs[variant].parent.name,
                    )  # fmt: skip
            # Prepared once per image here, not by each booting thread.
            for platform, prepare in (("docker", self._docker_image), ("vm", self._vm_layer)):
                for variant in sorted({state.hosts[n].variant for n in todo if state.hosts[n].platform == platform}):
                    prepare(rootfs[variant])
            started = time.monotonic()
            # The state is saved as each process starts: a session killed in the middle of a boot
            # leaves a state file that `lab down` (and the next test session) can clean up from.
            self._checkpoint = lambda: self._save(state)
            self._save(state)

            def boot(name: str) -> str:
                return self._boot_safely(state.hosts[name], rootfs[state.hosts[name].variant])

            with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
                results = list(pool.map(boot, todo))
            errors = [r for r in results if r]
            if todo and not errors:
                self.progress(f"{len(todo)} host(s) booted in {time.monotonic() - started:.1f}s")
            self.write_inventory(state)
            if errors:
                raise EnvironmentProblem("; ".join(errors))
            return state

    def _replace_unwanted(self, state: LabState, wanted: dict[str, tuple[str, str]]) -> None:
        """Remove the hosts not wanted, and those wanted otherwise: on another platform, of another
        variant, or made from an image whose recipe has changed since."""
        for name in sorted(set(state.hosts) - set(wanted)):
            self.progress(f"{name}: stopping (not among the {len(wanted)} wanted hosts)")
            self._destroy(state, state.hosts[name])
        for name, host in list(state.hosts.items()):
            platform, variant = wanted[name]
            if host.platform != platform:
                self.progress(f"{name}: replacing (wanted on {platform}, runs on {host.platform})")
            elif host.variant != variant:
                self.progress(f"{name}: replacing (wanted of variant {variant}, is {host.variant})")
            elif host.image != image.recipe_hash(variant):
                self.progress(f"{name}: replacing (the {variant} image recipe changed)")
            else:
                continue
            self._destroy(state, host)

    def down(self) -> int:
        with self._locked() as state:
            count = 0
            for host in list(state.hosts.values()):
                self._destroy(state, host)
                count += 1
        self.settings.state_file.unlink(missing_ok=True)
        if self.settings.inventory.exists() and "preaudit lab" in self.settings.inventory.read_text()[:200]:
            self.settings.inventory.unlink()
        return count

    def stop_host(self, name: str) -> None:
        """Power a host off but keep its disk, as a crashed or rebooting machine would be."""
        with self._locked() as state:
            self._stop_processes(self._host(state, name))

    def start_host(self, name: str) -> None:
        with self._locked() as state:
            host = self._host(state, name)
            if not host.running():
                error = self._boot_safely(host, self._image_of(host))
                if error:
                    raise EnvironmentProblem(error)

    def reset_host(self, name: str) -> None:
        """Give a host a fresh disk from the image (as if newly provisioned) and boot it."""
        with self._locked() as state:
            host = self._host(state, name)
            self._wipe(host)
            rootfs = image.ensure_image(self.settings, self.progress, host.variant)
            host.image = rootfs.parent.name
            error = self._boot_safely(host, rootfs)
            if error:
                raise EnvironmentProblem(error)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for host in self.state().hosts.values():
            ref = host.process()
            rows.append({
                "name": host.name,
                "running": host.running(),
                "platform": host.platform,
                "variant": host.variant,
                "pid": ref.pid if ref else None,
                "address": host.address,
                "ssh": f"127.0.0.1:{host.ssh_port}",
                "https": f"127.0.0.1:{host.https_port}",
                "forwarders": sum(1 for f in host.forwarders if ProcessRef.from_dict(f).alive()),
            })  # fmt: skip
        return rows

    def leader_pid(self, name: str) -> int:
        """PID (on the controller) of the host's init, for nsenter."""
        host = self._host(self.state(), name)
        if host.platform == "vm":
            raise EnvironmentProblem(f"lab host {name} is a VM: it has no namespaces on the controller to enter")
        ref = host.process()
        if ref is None or not ref.alive():
            raise EnvironmentProblem(f"lab host {name} is not running")
        leader = ProcessRef.from_dict(host.leader) if host.leader else None
        if leader is not None and leader.alive():
            return leader.pid
        return self._leader(ref, time.monotonic() + 5)  # a state written before hosts' inits were kept

    # -- inventory ---------------------------------------------------------------------------

    def write_inventory(self, state: LabState | None = None) -> Path:
        state = state or self.state()
        ca = ensure_ca(self.settings)
        hosts = {h.name: self._inventory_host(h) for h in sorted(state.hosts.values(), key=lambda h: h.slot)}
        inventory = {
            "all": {
                "vars": {
                    "ansible_user": self.ADMIN_USER,
                    "ansible_become": True,
                    "ansible_ssh_private_key_file": str(self.settings.ssh_key),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "preaudit_lab": True,
                    # The lab CA issues each host's certificate (its key stays on the controller).
                    "tls_hardening_ca_cert": str(ca.certificate),
                    "tls_hardening_ca_key": str(ca.private_key),
                    # ... and the scans trust it (TLS-006).
                    "preaudit_tls_ca_file": str(ca.certificate),
                },
                "children": {
                    "simulation": {
                        "hosts": hosts,
                        # The platform's port: the firewall keeps it open besides SSH.
                        "vars": {"os_hardening_firewall_allowed_tcp_ports": [443]},
                    }
                },
            }
        }
        header = "# Written by `preaudit lab up`; rewritten on every lab change. Do not edit.\n"
        _atomic_write(self.settings.inventory, header + yaml.safe_dump(inventory, sort_keys=False))
        return self.settings.inventory

    def _inventory_host(self, host: HostState) -> dict[str, Any]:
        variables: dict[str, Any] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": host.ssh_port,
            "lab_address": host.address,
            "lab_https_port": host.https_port,
            "lab_platform": host.platform,
            "lab_variant": host.variant,
        }
        if image.variant(host.variant).admin_user == "root":
            variables.update(_root_managed_vars())
        return variables

    # -- internals ---------------------------------------------------------------------------

    def _image_of(self, host: HostState) -> Path:
        """The rootfs of the image the host's disk was made from (its variant's current one for a
        state that does not say)."""
        own = self.settings.image_cache / host.image / "rootfs" if host.image else None
        return own if own is not None and own.is_dir() else image.image_rootfs(self.settings, host.variant)

    def _host(self, state: LabState, name: str) -> HostState:
        if name not in state.hosts:
            known = ", ".join(sorted(state.hosts)) or "none (run `preaudit lab up`)"
            raise InputError(f"unknown lab host {name!r} (hosts: {known})")
        return state.hosts[name]

    def _ensure_ssh_key(self) -> None:
        key = self.settings.ssh_key
        if key.exists() and key.with_suffix(".pub").exists():
            return
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key.unlink(missing_ok=True)
        _sh(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "preaudit-lab-controller", "-f", str(key)],
            "ssh-keygen",
        )

    def _boot_safely(self, host: HostState, rootfs: Path) -> str:
        try:
            self._boot(host, rootfs)
        except (EnvironmentProblem, OSError, subprocess.SubprocessError, RuntimeError) as exc:
            self._stop_processes(host)
            console = host.host_dir / "console.log"
            tail = console.read_text(errors="replace").strip().splitlines()[-3:] if console.exists() else []
            return f"{host.name}: {exc}" + (f" (console: {' | '.join(tail)})" if tail else "")
        return ""

    def _mount(self, host: HostState, rootfs: Path, layers: tuple[Path, ...] = ()) -> Path:
        host_dir = host.host_dir
        root = Path(host.root)
        for sub in ("upper", "work", "root"):
            (host_dir / sub).mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(root):
            lower = ":".join(str(p) for p in (*layers, rootfs))
            options = f"lowerdir={lower},upperdir={host_dir / 'upper'},workdir={host_dir / 'work'}"
            _sh(["mount", "-t", "overlay", "overlay", "-o", options, str(root)], f"{host.name}: overlay mount")
        return root

    def _unmount(self, host: HostState) -> None:
        root = Path(host.root)
        if os.path.ismount(root):
            result = subprocess.run(["umount", str(root)], capture_output=True, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "--lazy", str(root)], capture_output=True, check=False)

    def _personalise(self, host: HostState, root: Path) -> None:
        (root / "etc/hostname").write_text(host.name + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n127.0.0.1\tmontecarlo.lab\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
        for kind, bits in (("rsa", "2048"), ("ecdsa", "256"), ("ed25519", "")):
            key = root / f"etc/ssh/ssh_host_{kind}_key"
            if key.exists():
                continue
            argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{host.name}", "-f", str(key)]
            _sh(argv + (["-b", bits] if bits else []), f"{host.name}: host key")
        uid, gid, home = _passwd_entry(root, image.variant(host.variant).admin_user)
        ssh_dir = root / home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        pub = self.settings.ssh_key.with_suffix(".pub").read_text()
        if not keys.exists() or pub not in keys.read_text():
            keys.write_text(pub)
        keys.chmod(0o600)
        os.chown(ssh_dir, uid, gid)
        os.chown(keys, uid, gid)

    def _leader(self, nspawn: ProcessRef, deadline: float) -> int:
        while time.monotonic() < deadline:
            for child in processes.children(nspawn.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return child
            if not nspawn.alive():
                raise EnvironmentProblem("systemd-nspawn exited during boot")
            time.sleep(0.05)
        raise EnvironmentProblem("the host's init did not start")

    def _network(self, host: HostState, leader: int) -> None:
        link = _sh(["nsenter", "-t", str(leader), "-n", "ip", "-o", "link", "show", "host0"], f"{host.name}: veth")
        match = re.search(r"host0@if(\d+)", link)
        if not match:
            raise EnvironmentProblem(f"{host.name}: cannot find the peer of host0 in {link.strip()!r}")
        peer_index = match.group(1)
        peer = next(
            (p.name for p in Path("/sys/class/net").iterdir() if (p / "ifindex").read_text().strip() == peer_index),
            None,
        )
        if peer is None:
            raise EnvironmentProblem(f"{host.name}: the controller side of the veth pair is missing")
        _gateway_link(host, peer)
        inner = (
            "ip link set lo up && "
            f"ip addr replace {host.address}/30 dev host0 && ip link set host0 up && "
            f"ip route replace default via {host.gateway}"
        )
        _sh(["nsenter", "-t", str(leader), "-n", "sh", "-ec", inner], f"{host.name}: host network")

    def _boot(self, host: HostState, rootfs: Path) -> None:
        deadline = time.monotonic() + (VM_BOOT_TIMEOUT if host.platform == "vm" else BOOT_TIMEOUT)
        host.host_dir.mkdir(parents=True, exist_ok=True)
        log = (host.host_dir / "console.log").open("ab")
        if host.platform == "docker":
            ref, leader = self._start_docker(host, rootfs)
        elif host.platform == "vm":
            ref, leader = self._start_vm(host, rootfs, log)
        else:
            root = self._mount(host, rootfs)
            self._personalise(host, root)
            if host.platform == "lxc":
                lxc_host.write_config(host.host_dir, host.name, root)
                argv = lxc_host.start_argv(host.host_dir, host.name)
            else:
                argv = [
                    "systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit", "--network-veth",
                    f"--machine={host.name}", "--console=passive", "--link-journal=no", f"--directory={root}",
                ]  # fmt: skip
            ref = processes.spawn(argv, log)
            host.nspawn = ref.to_dict()
            self._checkpoint()
            leader = self._leader(ref, deadline)
        host.leader = ProcessRef.of(leader).to_dict()
        self._checkpoint()
        if host.platform != "vm":  # a VM's tap link is set up before QEMU opens it
            self._network(host, leader)
        host.forwarders = []
        host.ssh_port = self._forward(host, host.ssh_port, 22, log)
        host.https_port = self._forward(host, host.https_port, 443, log)
        self._checkpoint()
        _wait_ssh_banner(host.ssh_port, deadline, ref)
        _wait_tls(host.https_port, deadline, ref)
        self.progress(f"{host.name}: up (ssh 127.0.0.1:{host.ssh_port}, https 127.0.0.1:{host.https_port})")

    # -- VM hosts ----------------------------------------------------------------------------

    def _vm_layer(self, rootfs: Path) -> Path:
        """The kernel layer of the image ``rootfs`` belongs to (each image, so each variant, has its own)."""
        with image.locked(self.settings.image_cache / ".lock"):
            log = self.settings.image_cache / f"build-{rootfs.parent.name}-vm.log"
            if not vm_host.layer_dir(rootfs.parent).joinpath("complete").exists():
                self.progress("installing a kernel for the VM hosts (once per image)")
            return vm_host.ensure_layer(rootfs.parent, self.settings.mirror, log)

    def _start_vm(self, host: HostState, rootfs: Path, log: IO[bytes]) -> tuple[ProcessRef, int]:
        layer = self._vm_layer(rootfs)
        disk = host.host_dir / "disk.raw"
        if not disk.exists():
            root = self._mount(host, rootfs, (layer,))
            try:
                self._personalise(host, root)
                vm_host.configure_guest(root, host.address, host.gateway)
                vm_host.make_disk(root, disk)
            finally:
                self._unmount(host)
            # The disk holds the host now; the overlay's layers are not needed again.
            shutil.rmtree(host.host_dir / "upper", ignore_errors=True)
            shutil.rmtree(host.host_dir / "work", ignore_errors=True)
        kernel, initrd = vm_host.boot_files(layer)
        tap = f"ve-{host.name}"
        vm_host.create_tap(tap)
        _gateway_link(host, tap)
        argv = vm_host.qemu_argv(host.name, disk, kernel, initrd, tap, host.host_dir / "serial.log")
        ref = processes.spawn(argv, log)
        host.nspawn = ref.to_dict()
        return ref, ref.pid

    # -- Docker hosts ------------------------------------------------------------------------

    def _docker_image(self, rootfs: Path) -> str:
        # Tagged with the image's recipe hash (its directory's name): one Docker image per variant.
        return docker_host.ensure_image(docker_host.client(self.settings.docker_host), rootfs, rootfs.parent.name)

    def _start_docker(self, host: HostState, rootfs: Path) -> tuple[ProcessRef, int]:
        engine = docker_host.client(self.settings.docker_host)
        container = docker_host.find(engine, host.container_name)
        if container is None:
            reference = docker_host.ensure_image(engine, rootfs, rootfs.parent.name)
            files = self._docker_host_files(host, rootfs)
            container = docker_host.create(
                engine, reference, host.container_name, host.name, str(self.settings.lab_dir), files
            )
        container.start()
        leader = docker_host.init_pid(container)
        ref = ProcessRef.of(leader)
        host.nspawn = ref.to_dict()
        self._checkpoint()
        # --network none leaves the container with loopback only: the fleet adds its veth pair.
        _sh(["ip", "link", "add", f"ve-{host.name}", "type", "veth", "peer", "name", "host0", "netns", str(leader)],
            f"{host.name}: veth")  # fmt: skip
        return ref, leader

    def _docker_host_files(self, host: HostState, rootfs: Path) -> bytes:
        """The files that make the image this host (host keys, the controller's key), as a tar."""
        staging = host.host_dir / "personal"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "etc/ssh").mkdir(parents=True)
        _uid, _gid, home = _passwd_entry(rootfs, image.variant(host.variant).admin_user)
        (staging / home).mkdir(parents=True)
        shutil.copy2(rootfs / "etc/passwd", staging / "etc/passwd")
        self._personalise(host, staging)
        keys = sorted(p.relative_to(staging).as_posix() for p in (staging / "etc/ssh").glob("ssh_host_*"))
        ssh_dir = f"{home}/.ssh"
        return docker_host.host_files(staging, [*keys, ssh_dir, f"{ssh_dir}/authorized_keys"])

    def _stop_docker(self, host: HostState) -> None:
        ref = host.process()
        if ref is None or not ref.alive():
            return
        try:
            container = docker_host.find(docker_host.client(self.settings.docker_host), host.container_name)
        except EnvironmentProblem:
            return  # the engine is gone: the caller ends the container's init itself
        if container is not None:
            docker_host.stop(container, timeout=20)

    def _remove_docker(self, host: HostState) -> None:
        try:
            engine = docker_host.client(self.settings.docker_host)
        except EnvironmentProblem as exc:
            self.progress(f"{host.name}: container {host.container_name} left behind ({exc})")
            return
        container = docker_host.find(engine, host.container_name)
        if container is not None:
            docker_host.remove(container)

    def _forward(self, host: HostState, port: int, target: int, log: IO[bytes]) -> int:
        """Expose the host's ``target`` port on 127.0.0.1; another process may have taken the port
        chosen earlier, in which case socat exits at once and a new free port is tried."""
        for _attempt in range(5):
            fwd = processes.spawn(
                ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:{host.address}:{target}"], log
            )
            time.sleep(0.15)
            if fwd.alive():
                host.forwarders.append(fwd.to_dict())
                return port
            port = _free_port()
        raise EnvironmentProblem(f"{host.name}: cannot expose port {target} on 127.0.0.1 (socat keeps failing)")

    def _stop_processes(self, host: HostState) -> None:
        for fwd in host.forwarders:
            processes.stop(ProcessRef.from_dict(fwd), timeout=2)
        host.forwarders = []
        ref = host.process()
        if host.platform == "docker":
            self._stop_docker(host)
        elif host.platform == "lxc" and ref is not None and ref.alive():
            # lxc-stop asks the container's systemd for a clean shutdown; lxc-start then exits.
            stop = lxc_host.stop_argv(host.host_dir, host.name, timeout=20)
            subprocess.run(stop, capture_output=True, timeout=40, check=False)
        if ref is not None:
            # SIGTERM asks nspawn for a clean shutdown of the host's systemd.
            processes.stop(ref, timeout=20)
        host.nspawn = None
        self._remove_leftovers(host)

    def _remove_leftovers(self, host: HostState) -> None:
        """What an nspawn killed before its host shut down (SIGKILL, the OOM killer, a timeout)
        leaves behind: the host's init with its network namespace, and so the controller's end of
        the veth pair and nspawn's propagation mount. The next boot of the host fails on them
        ("Failed to add new veth interfaces: File exists")."""
        leader = ProcessRef.from_dict(host.leader) if host.leader else None
        if leader is not None and leader.alive():
            # SIGKILL to a PID namespace's init ends every process in the namespace.
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader.pid, signal.SIGKILL)
        host.leader = None
        link = Path(f"/sys/class/net/ve-{host.name}")
        deadline = time.monotonic() + 10
        while (link.exists() or (leader is not None and leader.alive())) and time.monotonic() < deadline:
            time.sleep(0.1)
        if link.exists():
            subprocess.run(["ip", "link", "delete", link.name], capture_output=True, check=False)
        propagate = Path("/run/systemd/nspawn/propagate") / host.name
        if propagate.exists():
            subprocess.run(["umount", "--lazy", str(propagate)], capture_output=True, check=False)
            shutil.rmtree(propagate, ignore_errors=True)

    def _wipe(self, host: HostState) -> None:
        """Stop a host and delete its disk."""
        self._stop_processes(host)
        if host.platform == "docker":
            self._remove_docker(host)
        self._unmount(host)
        shutil.rmtree(host.host_dir, ignore_errors=True)

    def _destroy(self, state: LabState, host: HostState) -> None:
        self._wipe(host)
        state.hosts.pop(host.name, None)
        self.progress(f"{host.name}: removed")
