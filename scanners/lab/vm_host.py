"""Lab hosts that are virtual machines: the lab image with a Debian cloud kernel, booted by QEMU.

A VM has its own kernel, so everything a container leaves to its host is the VM's own: kernel
settings, modules, auditd, the firewall. The image gets a kernel once per recipe (the "vm layer",
an overlay upper directory on top of the image); each VM boots a raw ext4 disk made from the
image, the layer and the host's own files. KVM is used when it works; otherwise QEMU emulates the
CPU (slower, the same machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scanners.errors import EnvironmentProblem

KERNEL_PACKAGE = "linux-image-cloud-amd64"
DISK_HEADROOM_MB = 1536
MEMORY_MB = 1024


def layer_dir(image_dir: Path) -> Path:
    return image_dir / "vm"


def ensure_layer(image_dir: Path, mirror: str, log: Path) -> Path:
    """The kernel and initramfs installed over the image, in an overlay upper directory."""
    layer = layer_dir(image_dir)
    if (layer / "complete").exists():
        return layer / "upper"
    if shutil.which("qemu-system-x86_64") is None or shutil.which("mkfs.ext4") is None:
        raise EnvironmentProblem("lab: VM hosts need qemu-system-x86 and e2fsprogs (scripts/setup.sh installs them)")
    shutil.rmtree(layer, ignore_errors=True)
    for sub in ("upper", "work", "merged"):
        (layer / sub).mkdir(parents=True)
    rootfs = image_dir / "rootfs"
    merged = layer / "merged"
    # The image's apt only knows its offline source: the kernel comes from the mirror, through a
    # source list given for this one install and removed after it.
    mirror_list = "/etc/apt/preaudit-vm-mirror.list"
    apt = f"apt-get -o Dir::Etc::SourceList={mirror_list} -o Dir::Etc::SourceParts=/dev/null"
    in_chroot = "; ".join([
        "export DEBIAN_FRONTEND=noninteractive",
        f"{apt} update -qq",
        f"{apt} install -y -qq --no-install-recommends {KERNEL_PACKAGE} initramfs-tools",
        f"rm -f {mirror_list}",
        "apt-get update -qq",
        "apt-get clean",
        "echo nameserver 127.0.0.53 > /etc/resolv.conf",
    ])  # fmt: skip
    script = " && ".join([
        f"mount -t overlay overlay -o lowerdir={rootfs},upperdir={layer / 'upper'},workdir={layer / 'work'} {merged}",
        f"mount -t proc proc {merged}/proc",
        f"mount -t sysfs sys {merged}/sys",
        f"mount --rbind /dev {merged}/dev",
        f"cp /etc/resolv.conf {merged}/etc/resolv.conf",
        f"echo 'deb {mirror} bookworm main' > {merged}{mirror_list}",
        f"chroot {merged} sh -ec '{in_chroot}'",
    ])  # fmt: skip
    with log.open("ab") as out:
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec", script],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(layer, ignore_errors=True)
        raise EnvironmentProblem(f"lab: installing the VM kernel failed (exit {result.returncode}; log: {log})")
    shutil.rmtree(layer / "work", ignore_errors=True)
    (layer / "complete").write_text("ok\n")
    return layer / "upper"


def boot_files(layer_upper: Path) -> tuple[Path, Path]:
    kernels = sorted((layer_upper / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise EnvironmentProblem(f"lab: the VM layer has no kernel in {layer_upper / 'boot'}")
    kernel = kernels[-1]
    initrd = kernel.with_name(kernel.name.replace("vmlinuz-", "initrd.img-"))
    if not initrd.exists():
        raise EnvironmentProblem(f"lab: the VM layer has no {initrd.name}")
    return kernel, initrd


def configure_guest(root: Path, address: str, gateway: str) -> None:
    """Static addressing by systemd-networkd, the guest end of the host's tap link."""
    network = root / "etc/systemd/network/10-preaudit-lab.network"
    network.parent.mkdir(parents=True, exist_ok=True)
    network.write_text(
        f"[Match]\nName=en* eth*\n\n[Network]\nAddress={address}/30\nGateway={gateway}\nLinkLocalAddressing=no\n"
    )
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.is_symlink():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # No fstab entry for / in the image: the kernel command line mounts it read-write.


def make_disk(root: Path, disk: Path) -> None:
    """A raw ext4 disk holding ``root`` (read through the host's overlay mount)."""
    used = subprocess.run(["du", "-sxm", str(root)], capture_output=True, text=True, check=False).stdout.split()
    size_mb = int(used[0]) + DISK_HEADROOM_MB if used else 3072
    disk.unlink(missing_ok=True)
    with disk.open("wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    result = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", str(root), str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        disk.unlink(missing_ok=True)
        raise EnvironmentProblem(f"lab: mkfs.ext4 of the VM disk failed: {result.stderr.strip()[-300:]}")


def kvm_usable() -> bool:
    return os.environ.get("PREAUDIT_LAB_VM_ACCEL", "tcg") == "kvm" and os.access("/dev/kvm", os.R_OK | os.W_OK)


def qemu_argv(name: str, disk: Path, kernel: Path, initrd: Path, tap: str, console: Path) -> list[str]:
    accel = ["-accel", "kvm", "-cpu", "host"] if kvm_usable() else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    return [
        "qemu-system-x86_64", "-name", name, *accel, "-smp", "2", "-m", str(MEMORY_MB),
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-serial", f"file:{console}",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet",
        "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe",
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip


def create_tap(tap: str) -> None:
    subprocess.run(["ip", "link", "delete", tap], capture_output=True, check=False)
    argv = ["ip", "tuntap", "add", "dev", tap, "mode", "tap"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EnvironmentProblem(f"lab: cannot create the tap link {tap}: {result.stderr.strip()}")
