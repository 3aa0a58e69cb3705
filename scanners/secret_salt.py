"""The per-installation salt that makes secret hashes in findings useless to anyone else.

A finding identifies a secret by an HMAC of it under this salt: stable across scans (so
fingerprints are stable), but not something an attacker can test guesses against. The salt is
taken from ``PREAUDIT_SECRET_SALT`` (e.g. shared by a CI fleet) or created once, at random, in
``$XDG_CONFIG_HOME/preaudit/secret-salt`` with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from scanners.errors import EnvironmentProblem, InputError

SALT_ENV = "PREAUDIT_SECRET_SALT"


def default_salt_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "preaudit" / "secret-salt"


def load_salt(path: Path | None = None) -> bytes:
    """The salt from the environment, else from ``path`` (created on first use)."""
    from_env = os.environ.get(SALT_ENV)
    if from_env is not None:
        if len(from_env.strip()) < 16:
            raise InputError(f"{SALT_ENV} must be at least 16 characters (use a random value)")
        return from_env.strip().encode("utf-8")
    path = path or default_salt_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        if path.stat().st_mode & 0o077:
            # Someone loosened it: the salt is only worth anything while it stays private.
            path.chmod(0o600)
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvironmentProblem(f"cannot read or create the secret salt {path}: {exc}") from None
    if len(value) < 16:
        raise InputError(f"secret salt {path} is empty or too short; delete it to create a new one")
    return value.encode("utf-8")


def salted_hash(salt: bytes, sha1_hex: str) -> str:
    """HMAC-SHA256 of detect-secrets' SHA-1 of a secret: comparable with a baseline, keyed by the salt."""
    return hmac.new(salt, sha1_hex.encode("ascii"), hashlib.sha256).hexdigest()


def salt_id(salt: bytes) -> str:
    """A short, non-reversible name for the salt, so caches made under another salt are not reused."""
    return hashlib.sha256(b"preaudit salt id\0" + salt).hexdigest()[:16]
