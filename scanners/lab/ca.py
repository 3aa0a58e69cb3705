"""The lab's own certificate authority: it issues the lab hosts' server certificates.

Made once per lab directory on the controller (``<lab_dir>/ca``) and kept across ``lab down``
and ``lab up`` like the controller's SSH key, so that clients which trust it keep trusting the
hosts. The private key never leaves the controller: the tls_hardening role sends each host's
certificate signing request here (a task delegated to localhost) and installs what comes back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scanners.errors import EnvironmentProblem
from scanners.lab.settings import LabSettings

CA_DAYS = 3650
CERT_NAME = "lab-ca.crt"
KEY_NAME = "lab-ca.key"


@dataclass(frozen=True, slots=True)
class LabCa:
    certificate: Path
    private_key: Path


def ca_paths(settings: LabSettings) -> LabCa:
    return LabCa(settings.ca_dir / CERT_NAME, settings.ca_dir / KEY_NAME)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.chmod(mode)
    tmp.replace(path)


def ensure_ca(settings: LabSettings) -> LabCa:
    """The lab CA's files, created when missing (key 0600 in a 0700 directory)."""
    paths = ca_paths(settings)
    if paths.certificate.exists() and paths.private_key.exists():
        if paths.private_key.stat().st_mode & 0o077:
            paths.private_key.chmod(0o600)
        return paths
    try:
        settings.ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.ca_dir.chmod(0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "preaudit lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"preaudit lab CA ({settings.prefix})"),
        ])  # fmt: skip
        now = datetime.now(UTC)
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        )  # fmt: skip
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write(paths.private_key, pem_key, 0o600)
        _write(paths.certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise EnvironmentProblem(f"lab: cannot create the lab CA in {settings.ca_dir}: {exc}") from None
    return paths
