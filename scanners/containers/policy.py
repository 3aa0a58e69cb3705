"""What counts as weak, shared by the Dockerfile, Compose and runtime checks so they agree.

Compose files and running containers describe the same settings in two vocabularies; the
judgement (which capabilities are dangerous, which host paths are sensitive, which user is
root, which restart policy is acceptable) lives here once.
"""

from __future__ import annotations

import itertools
import re
from pathlib import PurePosixPath

# Docker's default capability set (moby oci/caps/defaults.go). Adding back one of these after
# `cap_drop: [ALL]` is normal; anything else widens what the container can do to the host.
DEFAULT_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)

# Mounting one of these directories gives the container the host's configuration, kernel
# interfaces, devices, binaries or Docker's own state (CIS 5.6 plus the container runtimes'
# state directories). /run and /var/run hold the engine sockets.
SENSITIVE_DIRECTORIES = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/var/lib/containerd",
        "/var/lib/docker",
        "/var/lib/kubelet",
        "/var/run",
    }
)
# Below these, only a writable mount is reported: read-only files such as /etc/localtime or
# /etc/ssl/certs are a common and harmless pattern.
_SENSITIVE_TREES = tuple(sorted(SENSITIVE_DIRECTORIES - {"/", "/run", "/var/run"}))

# Sockets that give control of a container engine to whoever can write to them.
ENGINE_SOCKET_NAMES = frozenset({"docker.sock", "containerd.sock", "crio.sock", "podman.sock", "dockershim.sock"})

ROOT_NAMES = frozenset({"root", "0"})


def normalize_capability(name: str) -> str:
    """`cap_sys_admin`, `CAP_SYS_ADMIN` and `SYS_ADMIN` all mean SYS_ADMIN."""
    upper = name.strip().upper()
    return upper.removeprefix("CAP_")


def dangerous_capabilities(added: list[str]) -> list[str]:
    """The added capabilities outside Docker's default set (ALL counts as dangerous)."""
    found: list[str] = []
    for cap in added:
        name = normalize_capability(cap)
        if name not in DEFAULT_CAPABILITIES and name not in found:
            found.append(name)
    return found


def _normalize_path(path: str) -> str:
    normalized = str(PurePosixPath(path))
    # PurePosixPath keeps a leading "//"; the kernel treats it as "/".
    return "/" + normalized.lstrip("/")


def is_engine_socket(source: str, engine_sockets: frozenset[str] = frozenset()) -> bool:
    """A bind source that is a container engine's control socket."""
    path = _normalize_path(source)
    return PurePosixPath(path).name in ENGINE_SOCKET_NAMES or path in engine_sockets


def sensitive_mount_reason(source: str, writable: bool) -> str | None:
    """Why mounting host path ``source`` is sensitive, or None when it is not."""
    path = _normalize_path(source)
    if path in SENSITIVE_DIRECTORIES:
        return f"host directory {path} mounted"
    if writable:
        for tree in _SENSITIVE_TREES:
            if path.startswith(tree + "/"):
                return f"host path {path} under {tree} mounted writable"
    return None


def is_root_user(user: str | None) -> bool:
    """True for no user at all (the image default, root unless the image says otherwise), root or uid 0."""
    if user is None:
        return True
    name = str(user).strip().split(":", 1)[0].strip()
    return name == "" or name in ROOT_NAMES


MAX_RESTART_RETRIES = 5


def restart_policy_problem(name: str | None, retries: int | None) -> str | None:
    """Why a restart policy is not acceptable (CIS 5.15: on-failure with at most 5 retries), or None.

    ``retries`` of 0 or None with on-failure means "retry forever".
    """
    policy = (name or "").strip().lower()
    if policy in ("", "no", "none"):
        return "no restart policy: a crashed container stays down"
    if policy in ("always", "unless-stopped", "any"):
        return f"restart policy {policy} restarts without limit"
    if policy == "on-failure":
        if not retries:
            return "on-failure without a retry limit restarts without limit"
        if retries > MAX_RESTART_RETRIES:
            return f"on-failure with {retries} retries (more than {MAX_RESTART_RETRIES})"
        return None
    return f"unknown restart policy {policy!r}"


# Names whose value is a secret. Tokens are matched on word boundaries of the variable name so
# that e.g. PASSWORD_HASH_ROUNDS is not a password but DB_PASSWORD is.
_SECRET_WORDS = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PASSPHRASE",
        "SECRET",
        "SECRETS",
        "TOKEN",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "PRIVATEKEY",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("API", "KEY"),
        ("ACCESS", "KEY"),
        ("PRIVATE", "KEY"),
        ("SECRET", "KEY"),
        ("AUTH", "KEY"),
        ("SIGNING", "KEY"),
        ("ENCRYPTION", "KEY"),
        ("CLIENT", "SECRET"),
    }
)
# A variable that names where a secret lives is the recommended pattern, not a leak.
_REFERENCE_SUFFIXES = frozenset({"FILE", "PATH", "DIR", "LOCATION"})
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name.upper()) if w]
    if not words or words[-1] in _REFERENCE_SUFFIXES:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def has_url_credentials(value: str) -> bool:
    return bool(_URL_CREDENTIALS.search(value))


def redact_url_credentials(text: str) -> str:
    """``text`` with any ``scheme://user:password@`` turned into ``scheme://user:***@``."""
    return _URL_CREDENTIALS.sub(lambda m: m.group(0).rsplit(":", 1)[0] + ":***@", text)
