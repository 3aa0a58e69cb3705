"""Ed25519 signing keys for evidence bundles: create, load, fingerprint.

The private key is PKCS#8 PEM, mode 0600, encrypted when ``PREAUDIT_SIGNING_PASSPHRASE`` is set
(the passphrase is read from the environment so that it never appears in a command line or a
shell history). The public key is SubjectPublicKeyInfo PEM, the form ``openssl`` reads, so an
auditor can check a bundle without preaudit. A key's fingerprint is ``sha256:`` and the hex
SHA-256 of its 32 raw public bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scanners.errors import InputError
from scanners.fsutil import write_bytes_atomic

PASSPHRASE_ENV = "PREAUDIT_SIGNING_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
PRIVATE_KEY_NAME = "preaudit-signing.key"
PUBLIC_KEY_NAME = "preaudit-signing.pub"


@dataclass(frozen=True, slots=True)
class KeyPair:
    private_path: Path
    public_path: Path
    fingerprint: str
    encrypted: bool


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_keypair(out_dir: Path, *, passphrase: bytes | None = None) -> KeyPair:
    """A new key pair in ``out_dir``; refuses to replace an existing key (a lost key is lost evidence)."""
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise InputError(f"{path} already exists: move it away first, keys are never overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_bytes_atomic(private_path, pem, mode=0o600)
    write_bytes_atomic(public_path, public_pem(key.public_key()), mode=0o644)
    return KeyPair(private_path, public_path, fingerprint(key.public_key()), encrypted=bool(passphrase))


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key at ``path``; the passphrase defaults to $PREAUDIT_SIGNING_PASSPHRASE.

    Refuses a key file other users can read, as ssh does: a signing key anyone on the machine
    could copy proves nothing.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such signing key") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read signing key: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{path}: signing key is accessible by other users (mode {mode & 0o777:o}); chmod 600 it")
    passphrase = passphrase if passphrase is not None else passphrase_from_env()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        # cryptography says TypeError both for "encrypted but no password" and the reverse.
        if passphrase is None:
            raise InputError(f"{path}: signing key is encrypted: set {PASSPHRASE_ENV}") from None
        raise InputError(f"{path}: signing key is not encrypted: unset {PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{path}: not a readable PEM private key, or wrong passphrase") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: signing key must be Ed25519, not {type(key).__name__}")
    return key


def parse_public_key(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{source}: public key must be Ed25519, not {type(key).__name__}")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such public key") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read public key: {exc.strerror}") from None
    return parse_public_key(data, str(path))
