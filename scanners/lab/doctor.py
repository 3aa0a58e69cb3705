"""Check the controller's prerequisites for the lab and say exactly how to fix what is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# program -> Debian package that provides it
PROGRAMS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "socat": "socat",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
    "lxc-start": "lxc",
    "qemu-system-x86_64": "qemu-system-x86",
    "mkfs.ext4": "e2fsprogs",
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    package: str | None = None


def _kernel_has(filesystem: str) -> bool:
    try:
        return any(line.split()[-1] == filesystem for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def run_checks() -> list[Check]:
    checks = [Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else "run as root (sudo)")]
    for program, package in PROGRAMS.items():
        path = shutil.which(program)
        checks.append(Check(program, path is not None, path or f"not found (package {package})", package))
    checks.append(
        Check(
            "overlayfs",
            _kernel_has("overlay"),
            "kernel supports overlay" if _kernel_has("overlay") else "the kernel lacks overlayfs (modprobe overlay)",
        )
    )
    return checks


def fix_command(checks: list[Check]) -> str | None:
    packages = sorted({c.package for c in checks if not c.ok and c.package})
    if not packages:
        return None
    return "apt-get update && apt-get install -y " + " ".join(packages)
