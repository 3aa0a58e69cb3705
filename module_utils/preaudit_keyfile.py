# Copyright: preaudit contributors. Apache-2.0.
"""Private key files and certificates as a host without python3-cryptography sees them.

Standard library only, so that a minimal host can make its own TLS key and say what it is:
- the public key of a PEM private key (PKCS#1 RSA, SEC1 EC, unencrypted PKCS#8) as a DER
  SubjectPublicKeyInfo, read with a small DER walk (the public half is stored in every one of
  these formats, so no arithmetic is needed), and the public key a certificate certifies;
- a new key made by ``ssh-keygen`` (openssh-client, which openssh-server depends on), which uses
  OpenSSL's key generation.

Why not ``ssh-keygen -e -m PKCS8`` to read a key: it refuses a key file that others can read (the
very keys that need fixing), and it reads ``KEY.pub`` instead of ``KEY`` when such a file exists.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

SEQUENCE, BIT_STRING, OCTET_STRING, OID = 0x30, 0x03, 0x04, 0x06
EXPLICIT_0, EXPLICIT_1 = 0xA0, 0xA1


def _encode(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _oid(dotted: str) -> bytes:
    """The complete DER encoding (tag, length, value) of an object identifier."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    content = b""
    for arc in [40 * first + second, *rest]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | (arc & 0x7F))
        content += bytes(chunk)
    return _encode(OID, content)


RSA_ENCRYPTION = _oid("1.2.840.113549.1.1.1")
EC_PUBLIC_KEY = _oid("1.2.840.10045.2.1")
DER_NULL = _encode(0x05, b"")
CURVES = {
    _oid("1.2.840.10045.3.1.7"): "secp256r1",
    _oid("1.3.132.0.34"): "secp384r1",
    _oid("1.3.132.0.35"): "secp521r1",
}
# ssh-keygen names an EC key by its size; OpenSSH supports exactly these three NIST curves.
SSH_KEYGEN_EC_BITS = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


class KeyFileError(Exception):
    """A key or certificate that cannot be read or made, with the reason."""


# -- PEM and DER ----------------------------------------------------------------------------


def pem_blocks(data: bytes) -> list[tuple[str, bytes, bool]]:
    """(label, DER, encrypted) of each PEM block in ``data``, in file order."""
    blocks = []
    for label, body in PEM_BLOCK.findall(data or b""):
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        headers = [line for line in lines if b":" in line]
        try:
            der = base64.b64decode(b"".join(line for line in lines if b":" not in line), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"unreadable PEM block {label.decode('ascii')}") from None
        blocks.append((label.decode("ascii"), der, any(b"ENCRYPTED" in h for h in headers)))
    return blocks


def pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label.encode(), lines, label.encode())


def _element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the content) of the DER element at ``offset``."""
    if offset + 2 > len(data) or data[offset] & 0x1F == 0x1F:
        raise KeyFileError("malformed DER")
    length, start = data[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(data):
            raise KeyFileError("malformed DER")
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > len(data):
        raise KeyFileError("truncated DER")
    return data[offset], start, start + length


def _children(der: bytes, tag: int = SEQUENCE) -> list[tuple[int, bytes, bytes]]:
    """(tag, content, complete encoding) of each element inside the one ``tag`` element ``der`` is."""
    outer, start, end = _element(der, 0)
    if outer != tag:
        raise KeyFileError("unexpected DER structure")
    children, offset = [], start
    while offset < end:
        child, child_start, child_end = _element(der, offset)
        children.append((child, der[child_start:child_end], der[offset:child_end]))
        offset = child_end
    return children


def _oid_text(encoded: bytes) -> str:
    """Dotted form of a complete OID encoding, for messages."""
    try:
        tag, start, end = _element(encoded, 0)
    except KeyFileError:
        return "unknown"
    if tag != OID or start == end:
        return "unknown"
    arcs, value = [], 0
    for byte in encoded[start:end]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


# -- public keys ----------------------------------------------------------------------------


def _spki(algorithm: list[bytes], public_bits: bytes) -> bytes:
    return _encode(SEQUENCE, _encode(SEQUENCE, b"".join(algorithm)) + _encode(BIT_STRING, b"\x00" + public_bits))


def _rsa_spki(rsa_private_key: bytes) -> bytes:
    fields = _children(rsa_private_key)  # version, n, e, d, p, q, ...
    if len(fields) < 3:
        raise KeyFileError("malformed RSA private key")
    public = _encode(SEQUENCE, fields[1][2] + fields[2][2])
    return _spki([RSA_ENCRYPTION, DER_NULL], public)


def _ec_spki(ec_private_key: bytes, curve: bytes | None) -> bytes:
    fields = _children(ec_private_key)  # version, private value, [0] curve, [1] public key
    tagged = {tag: content for tag, content, _whole in fields}
    curve = curve or tagged.get(EXPLICIT_0)
    public = tagged.get(EXPLICIT_1)
    if curve is None:
        raise KeyFileError("the EC private key does not name its curve")
    if public is None:
        raise KeyFileError("the EC private key does not hold its public key")
    tag, start, end = _element(public, 0)
    if tag != BIT_STRING:
        raise KeyFileError("malformed EC public key")
    return _spki([EC_PUBLIC_KEY, curve], public[start + 1 : end])


def _pkcs8_spki(private_key_info: bytes) -> bytes:
    fields = _children(private_key_info)  # version, algorithm, private key, ...
    if len(fields) < 3 or fields[2][0] != OCTET_STRING:
        raise KeyFileError("malformed PKCS#8 private key")
    algorithm = [whole for _tag, _content, whole in _children(fields[1][2])]
    if algorithm[0] == RSA_ENCRYPTION:
        return _rsa_spki(fields[2][1])
    if algorithm[0] == EC_PUBLIC_KEY:
        return _ec_spki(fields[2][1], algorithm[1] if len(algorithm) > 1 else None)
    raise KeyFileError(f"unsupported private key type {_oid_text(algorithm[0])} (EC or RSA only)")


def _private_key_spki(label: str, der: bytes) -> bytes:
    if label == "RSA PRIVATE KEY":
        return _rsa_spki(der)
    if label == "EC PRIVATE KEY":
        return _ec_spki(der, None)
    return _pkcs8_spki(der)


def private_key_spki(data: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of the first private key in the PEM ``data``."""
    for label, der, encrypted in pem_blocks(data):
        if not label.endswith("PRIVATE KEY"):
            continue  # e.g. the EC PARAMETERS block openssl ecparam writes first
        if label == "ENCRYPTED PRIVATE KEY" or encrypted:
            raise KeyFileError("the private key is encrypted (nginx would ask for its passphrase)")
        if label not in ("RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"):
            raise KeyFileError(f"unsupported private key format {label}")
        try:
            return _private_key_spki(label, der)
        except IndexError:
            raise KeyFileError(f"malformed {label}") from None
    raise KeyFileError("no PEM private key found")


def certificate_spki(certificate: bytes) -> bytes:
    """DER SubjectPublicKeyInfo that the DER ``certificate`` certifies."""
    try:
        tbs = _children(_children(certificate)[0][2])
    except IndexError:
        raise KeyFileError("malformed certificate") from None
    if tbs and tbs[0][0] == EXPLICIT_0:  # version
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise KeyFileError("malformed certificate")
    return tbs[5][2]  # after serial, signature algorithm, issuer, validity, subject


def certificates(data: bytes) -> list[bytes]:
    """DER of every PEM certificate in ``data`` (nothing else: a key in the same file stays out)."""
    return [der for label, der, _encrypted in pem_blocks(data) if label == "CERTIFICATE"]


def describe(spki: bytes) -> str:
    """``EC secp256r1`` or ``RSA 3072``, as the cryptography side names keys."""
    try:
        algorithm, public = _children(spki)[:2]
        identifiers = [whole for _tag, _content, whole in _children(algorithm[2])]
        if identifiers[0] == EC_PUBLIC_KEY:
            curve = identifiers[1] if len(identifiers) > 1 else b""
            return f"EC {CURVES.get(curve, _oid_text(curve))}"
        if identifiers[0] == RSA_ENCRYPTION:
            modulus = _children(public[1][1:])[0][1]
            return f"RSA {int.from_bytes(modulus, 'big').bit_length()}"
        return f"unsupported key type {_oid_text(identifiers[0])}"
    except (KeyFileError, IndexError):
        return "unreadable public key"


def wanted(key_type: str, size: int, curve: str) -> str:
    return f"EC {curve}" if key_type == "ec" else f"RSA {size}"


# -- making a key ---------------------------------------------------------------------------


def ssh_keygen_options(key_type: str, size: int, curve: str) -> list[str]:
    if key_type == "ec":
        if curve not in SSH_KEYGEN_EC_BITS:
            raise KeyFileError(f"unsupported curve {curve} ({', '.join(sorted(SSH_KEYGEN_EC_BITS))})")
        return ["-t", "ecdsa", "-b", str(SSH_KEYGEN_EC_BITS[curve])]
    if key_type == "rsa":
        if size < 2048:
            raise KeyFileError(f"RSA keys must have at least 2048 bits, not {size}")
        return ["-t", "rsa", "-b", str(size)]
    raise KeyFileError(f"unsupported key type {key_type} (ec or rsa)")


def create_key(path: str, key_type: str, size: int, curve: str, ssh_keygen: str) -> None:
    """Replace ``path`` atomically with a new PEM key (0600, root's when run as root).

    ssh-keygen writes the key and a ``.pub`` beside it, so it writes into a private directory next
    to ``path``; only the key is renamed into place.
    """
    options = ssh_keygen_options(key_type, size, curve)
    target = Path(path)
    if not target.parent.is_dir():
        target.parent.mkdir(mode=0o755, parents=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        new = work / "key"
        result = subprocess.run(
            [ssh_keygen, "-q", *options, "-m", "PEM", "-N", "", "-C", "", "-f", str(new)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip() or f"exit {result.returncode}"
            raise KeyFileError(f"ssh-keygen could not create the key: {detail}")
        if os.geteuid() == 0:
            os.chown(new, 0, 0)
        new.chmod(0o600)
        with new.open("rb") as handle:
            os.fsync(handle.fileno())
        new.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
