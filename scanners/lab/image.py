"""Build, once per variant and cached by recipe hash, the Debian 12 image of a simulation host.

A variant is a kind of host: ``lab`` (the weak, fully equipped simulation host) or ``minimal`` (a
minbase host as a real fleet has them, managed as root). The variants share the platform files
(``image/files``) and the recipe steps in ``image/common.sh``; each has a recipe script of its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scanners.errors import EnvironmentProblem, InputError
from scanners.lab.settings import LabSettings

SUITE = "bookworm"
RECIPE_DIR = Path(__file__).with_name("image")
FILES_DIR = RECIPE_DIR / "files"
COMMON_SCRIPT = "common.sh"
# The apt source every variant configures as its only one (lab hosts have no network).
OFFLINE_APT_SOURCE = "/opt/offline-apt"
# A minimal host's second apt source, indexed but not configured: python3-cryptography and what it
# needs there. A test "fixes the cause" of a control that failed for lack of it by adding
# FIX_APT_SOURCE_LINE to the host's sources.
FIX_APT_SOURCE = "/var/local/preaudit-fix-apt"
FIX_APT_SOURCE_LINE = f"deb [trusted=yes] file:{FIX_APT_SOURCE} ./"
# Bump when the way the image is assembled here (not in the recipe files) changes.
BUILDER_REVISION = "4"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    # The variant's own recipe in RECIPE_DIR, run in the chroot after common.sh.
    script: str
    # What debootstrap installs in its own pass; the recipe adds the rest with apt.
    include: tuple[str, ...]
    # The account Ansible connects as, holding the controller's key.
    admin_user: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "lab", "build-in-chroot.sh",
            ("systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3", "iproute2",
             "sudo", "procps", "kmod"),
            admin_user="ops",
        ),
        # Only what the platform needs to run. The lab's boot machinery runs its commands in the
        # host's network namespace with the controller's binaries, so nothing is added for it
        # (iproute2 and procps still arrive as dependencies of nginx and openssh-server).
        Variant(
            "minimal", "build-minimal.sh",
            ("systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3", "sudo"),
            admin_user="root",
        ),
    )
}  # fmt: skip
DEFAULT_VARIANT = "lab"


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise InputError(f"unknown lab variant {name!r} (known: {', '.join(VARIANTS)})") from None


def _recipe_files(chosen: Variant) -> list[Path]:
    """The recipe files of ``chosen``: everything in RECIPE_DIR but the other variants' scripts."""
    others = {v.script for v in VARIANTS.values() if v.name != chosen.name}
    files = (p for p in RECIPE_DIR.rglob("*") if p.is_file())
    return sorted(p for p in files if p.relative_to(RECIPE_DIR).as_posix() not in others)


def recipe_hash(name: str = DEFAULT_VARIANT) -> str:
    """Hash of everything that decides the variant's image: a change triggers a rebuild of that image."""
    chosen = variant(name)
    digest = hashlib.sha256()
    digest.update(
        f"{SUITE}|{chosen.name}|{','.join(chosen.include)}|{OFFLINE_APT_SOURCE}|{FIX_APT_SOURCE}|{BUILDER_REVISION}".encode()
    )
    for path in _recipe_files(chosen):
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


def _run(argv: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
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


def _prune(cache: Path, keep: set[str]) -> None:
    """Remove images of older recipes unless a running host still uses one as its lower layer."""
    mounts = _mounted_lowerdirs()
    for entry in cache.iterdir():
        if entry.name in keep or not entry.is_dir() or entry.name.startswith(".build-"):
            continue
        if str(entry) in mounts:
            continue
        shutil.rmtree(entry, ignore_errors=True)


def image_rootfs(settings: LabSettings, name: str = DEFAULT_VARIANT) -> Path:
    return settings.image_cache / recipe_hash(name) / "rootfs"


def is_built(settings: LabSettings, name: str = DEFAULT_VARIANT) -> bool:
    return (settings.image_cache / recipe_hash(name) / "complete").exists()


def _recipe_environment() -> dict[str, str]:
    return {**os.environ, "PREAUDIT_OFFLINE_APT": OFFLINE_APT_SOURCE, "PREAUDIT_FIX_APT": FIX_APT_SOURCE}


def _build(chosen: Variant, rootfs: Path, mirror: str, log: Path, progress: Progress) -> None:
    progress(f"debootstrap {SUITE} (image {recipe_hash(chosen.name)}, variant {chosen.name})")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(chosen.include)}", SUITE, str(rootfs), mirror],
        log, "debootstrap",
    )  # fmt: skip
    progress("installing the platform and the offline apt source")
    shutil.copytree(FILES_DIR, rootfs, dirs_exist_ok=True, symlinks=True)
    _write_seeded_certificate(rootfs)
    shutil.copy2(RECIPE_DIR / COMMON_SCRIPT, rootfs / "tmp" / COMMON_SCRIPT)
    shutil.copy2(RECIPE_DIR / chosen.script, rootfs / "tmp/build.sh")
    shutil.copy2("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    # A private mount namespace: proc/sys/dev mounts vanish with it even if the build dies.
    script = (
        f"mount -t proc proc {rootfs}/proc && mount -t sysfs sys {rootfs}/sys && "
        f"mount --rbind /dev {rootfs}/dev && chroot {rootfs} /bin/sh /tmp/build.sh"
    )
    _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec", script], log, "image recipe",
         env=_recipe_environment())  # fmt: skip
    for leftover in ("build.sh", COMMON_SCRIPT):
        (rootfs / "tmp" / leftover).unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("nameserver 127.0.0.53\n")


def ensure_image(settings: LabSettings, progress: Progress, name: str = DEFAULT_VARIANT) -> Path:
    """Return the rootfs of the variant's current recipe, building it first if it is not cached."""
    chosen = variant(name)
    key = recipe_hash(chosen.name)
    final = settings.image_cache / key
    with locked(settings.image_cache / ".lock"):
        if (final / "complete").exists():
            return final / "rootfs"
        started = time.monotonic()
        work = settings.image_cache / f".build-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log = settings.image_cache / f"build-{key}.log"
        log.unlink(missing_ok=True)
        try:
            _build(chosen, work / "rootfs", settings.mirror, log, progress)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            (final / "variant").write_text(f"{chosen.name}\n")
            (final / "complete").write_text(f"built in {time.monotonic() - started:.0f}s\n")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        # Every variant's current image stays: only images of recipes that changed go.
        _prune(settings.image_cache, keep={recipe_hash(v) for v in VARIANTS})
        progress(f"image {key} ({chosen.name}) built in {time.monotonic() - started:.0f}s")
        return final / "rootfs"
