"""Build, once and cached by recipe hash, the Debian 12 image of a simulation host."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scanners.errors import EnvironmentProblem
from scanners.lab.settings import LabSettings

SUITE = "bookworm"
RECIPE_DIR = Path(__file__).with_name("image")
CHROOT_SCRIPT = RECIPE_DIR / "build-in-chroot.sh"
FILES_DIR = RECIPE_DIR / "files"
# What debootstrap installs in its own pass; the chroot script adds the rest with apt.
DEBOOTSTRAP_INCLUDE = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3", "iproute2",
    "sudo", "procps", "kmod",
)  # fmt: skip
# Bump when the way the image is assembled here (not in the recipe files) changes.
BUILDER_REVISION = "3"

Progress = Callable[[str], None]


def recipe_hash() -> str:
    """Hash of everything that decides the image's content: a change triggers a rebuild."""
    digest = hashlib.sha256()
    digest.update(f"{SUITE}|{','.join(DEBOOTSTRAP_INCLUDE)}|{BUILDER_REVISION}".encode())
    for path in sorted(p for p in RECIPE_DIR.rglob("*") if p.is_file()):
        rel = path.relative_to(RECIPE_DIR).as_posix()
        executable = os.access(path, os.X_OK)
        digest.update(f"\0{rel}\0{int(executable)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (the image cache's builds take ``<cache>/.lock``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise EnvironmentProblem(f"lab image: {what} failed (exit {result.returncode}): {tail[0]} (log: {log})")


def _write_seeded_certificate(rootfs: Path) -> None:
    """The platform's TLS key pair as an unhardened host has it: self-signed, RSA 2048, no SAN."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "montecarlo.lab")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    target = rootfs / "etc/ssl/montecarlo"
    target.mkdir(parents=True, exist_ok=True)
    (target / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (target / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _mounted_lowerdirs() -> str:
    try:
        return Path("/proc/self/mounts").read_text()
    except OSError:
        return ""


def _prune(cache: Path, keep: str) -> None:
    """Remove images of older recipes unless a running host still uses one as its lower layer."""
    mounts = _mounted_lowerdirs()
    for entry in cache.iterdir():
        if entry.name == keep or not entry.is_dir() or entry.name.startswith(".build-"):
            continue
        if str(entry) in mounts:
            continue
        shutil.rmtree(entry, ignore_errors=True)


def image_rootfs(settings: LabSettings) -> Path:
    return settings.image_cache / recipe_hash() / "rootfs"


def is_built(settings: LabSettings) -> bool:
    return (settings.image_cache / recipe_hash() / "complete").exists()


def ensure_image(settings: LabSettings, progress: Progress) -> Path:
    """Return the rootfs of the current recipe, building it first if it is not cached."""
    key = recipe_hash()
    final = settings.image_cache / key
    with locked(settings.image_cache / ".lock"):
        if (final / "complete").exists():
            return final / "rootfs"
        started = time.monotonic()
        work = settings.image_cache / f".build-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rootfs = work / "rootfs"
        log = settings.image_cache / f"build-{key}.log"
        log.unlink(missing_ok=True)
        try:
            progress(f"debootstrap {SUITE} (image {key})")
            _run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(DEBOOTSTRAP_INCLUDE)}", SUITE,
                 str(rootfs), settings.mirror],
                log, "debootstrap",
            )  # fmt: skip
            progress("installing the platform and the offline apt source")
            shutil.copytree(FILES_DIR, rootfs, dirs_exist_ok=True, symlinks=True)
            _write_seeded_certificate(rootfs)
            shutil.copy2(CHROOT_SCRIPT, rootfs / "tmp/build.sh")
            shutil.copy2("/etc/resolv.conf", rootfs / "etc/resolv.conf")
            # A private mount namespace: proc/sys/dev mounts vanish with it even if the build dies.
            script = (
                f"mount -t proc proc {rootfs}/proc && mount -t sysfs sys {rootfs}/sys && "
                f"mount --rbind /dev {rootfs}/dev && chroot {rootfs} /bin/sh /tmp/build.sh"
            )
            _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec", script], log, "image recipe")
            (rootfs / "tmp/build.sh").unlink(missing_ok=True)
            (rootfs / "etc/resolv.conf").write_text("nameserver 127.0.0.53\n")
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            (final / "complete").write_text(f"built in {time.monotonic() - started:.0f}s\n")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _prune(settings.image_cache, keep=key)
        progress(f"image {key} built in {time.monotonic() - started:.0f}s")
        return final / "rootfs"
