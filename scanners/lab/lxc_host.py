"""Lab hosts that are LXC system containers: the host's overlay root booted by ``lxc-start``.

The container takes LXC's own defaults for a distribution container (``common.conf``: the
capabilities it drops, its seccomp policy, /proc and /sys mounted partly read-only), so the roles
meet what an LXC host really allows. Its veth pair is named like the other lab hosts' (``ve-<name>``
on the controller, ``host0`` inside) so the fleet configures its network the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scanners.errors import EnvironmentProblem

COMMON_CONFIG = Path("/usr/share/lxc/config/common.conf")


def lxc_path(host_dir: Path) -> Path:
    return host_dir / "lxc"


def write_config(host_dir: Path, name: str, root: Path) -> Path:
    if shutil.which("lxc-start") is None or not COMMON_CONFIG.exists():
        raise EnvironmentProblem("lab: LXC hosts need Debian's lxc package (scripts/setup.sh installs it)")
    config_dir = lxc_path(host_dir) / name
    config_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"lxc.include = {COMMON_CONFIG}",
        "lxc.arch = linux64",
        f"lxc.uts.name = {name}",
        f"lxc.rootfs.path = dir:{root}",
        "lxc.net.0.type = veth",
        f"lxc.net.0.veth.pair = ve-{name}",
        "lxc.net.0.name = host0",
        f"lxc.console.logfile = {host_dir / 'console.log'}",
        # systemd in the container needs to know it is one (and which kind) from the start.
        "lxc.environment = container=lxc",
        # lxc-stop's default halt signal (SIGPWR) does not shut systemd down; this one does.
        "lxc.signal.halt = SIGRTMIN+3",
    ]
    if Path("/sys/kernel/security/apparmor").exists():
        lines.append("lxc.apparmor.profile = generated")
    else:
        lines.append("lxc.apparmor.profile = unconfined")
    config = config_dir / "config"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_argv(host_dir: Path, name: str) -> list[str]:
    """``lxc-start`` in the foreground: the fleet keeps it as the host's process, like nspawn."""
    return ["lxc-start", "--foreground", "--name", name, "--lxcpath", str(lxc_path(host_dir)),
            "--logpriority", "WARN", "--logfile", str(host_dir / "lxc.log")]  # fmt: skip


def stop_argv(host_dir: Path, name: str, timeout: int) -> list[str]:
    return ["lxc-stop", "--name", name, "--lxcpath", str(lxc_path(host_dir)), "--timeout", str(timeout)]
