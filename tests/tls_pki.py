"""A throw-away PKI for TLS tests: a test CA, the certificates it issues, and stapled OCSP responses.

Everything is made with ``cryptography`` except the SHA-1-signed certificate: cryptography 46
refuses SHA-1 and MD5 for new signatures, so that one certificate is signed by the ``openssl``
command (OpenSSL 3 still allows it) from a key and CSR that cryptography made.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Never contacted: stapled responses come from a file, the URL only makes stapling applicable.
TEST_OCSP_URL = "http://127.0.0.1:9/ocsp"


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key on disk, as a TLS server loads them."""

    certificate: x509.Certificate
    cert_file: Path
    key_file: Path


def new_key(kind: str) -> PrivateKey:
    """``ec256``, ``ec384``, ``rsa2048``, ``rsa1024`` ..."""
    if kind.startswith("ec"):
        curve: ec.EllipticCurve = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}[kind]
        return ec.generate_private_key(curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write_key(key: PrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_pair(directory: Path, stem: str, cert: x509.Certificate, key: PrivateKey) -> KeyPair:
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_file)
    return KeyPair(cert, cert_file, key_file)


def self_signed_without_san(directory: Path, stem: str, common_name: str) -> KeyPair:
    """What the lab's unhardened image ships: RSA 2048, self-signed, a CN and no SAN, one year."""
    key = new_key("rsa2048")
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return _write_pair(directory, stem, cert, key)


class TestCa:
    """A root CA whose certificate file is what a scan passes as ``ca_file``."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = new_key("ec256")
        now = datetime.now(UTC)
        public = self.key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("preaudit test CA"))
            .issuer_name(_name("preaudit test CA"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=30))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._ca_key_file = directory / "ca.key"
        _write_key(self.key, self._ca_key_file)

    def _leaf_builder(
        self, key: PrivateKey, names: list[str], not_before: datetime, not_after: datetime, ocsp_url: str | None
    ) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if ocsp_url:
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
            builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
        return builder

    def issue(
        self,
        stem: str,
        names: list[str],
        *,
        key_kind: str = "ec256",
        valid_days: tuple[int, int] = (-1, 60),
        ocsp_url: str | None = None,
    ) -> KeyPair:
        """A leaf for ``names`` (the first is also the CN), valid from/to days relative to now."""
        key = new_key(key_kind)
        now = datetime.now(UTC)
        builder = self._leaf_builder(
            key, names, now + timedelta(days=valid_days[0]), now + timedelta(days=valid_days[1]), ocsp_url
        )
        return _write_pair(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key)

    def issue_sha1(self, stem: str, names: list[str]) -> KeyPair:
        """A leaf signed with ecdsa-with-SHA1, through the openssl command (see the module docstring)."""
        key = new_key("ec256")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_name(names[0]))
            .add_extension(_san(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        csr_file = self.directory / f"{stem}.csr"
        csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        cert_file = self.directory / f"{stem}.crt"
        ca = ["-CA", str(self.ca_file), "-CAkey", str(self._ca_key_file), "-set_serial", "4242"]
        out = ["-days", "90", "-copy_extensions", "copy", "-out", str(cert_file)]
        subprocess.run(
            ["openssl", "x509", "-req", "-in", str(csr_file), *ca, "-sha1", *out],
            check=True,
            capture_output=True,
        )
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key_file = self.directory / f"{stem}.key"
        _write_key(key, key_file)
        return KeyPair(cert, cert_file, key_file)

    def ocsp_response(
        self,
        leaf: x509.Certificate,
        path: Path,
        *,
        status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
        next_update_days: int = 7,
    ) -> Path:
        """A DER OCSP response about ``leaf``, signed by the CA, for ``ssl_stapling_file``."""
        now = datetime.now(UTC)
        revoked = status == ocsp.OCSPCertStatus.REVOKED
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=leaf,
                issuer=self.certificate,
                algorithm=hashes.SHA1(),  # the CertID hash every OCSP client understands (RFC 6960)
                cert_status=status,
                this_update=now - timedelta(days=max(1, -next_update_days + 1)),
                next_update=now + timedelta(days=next_update_days),
                revocation_time=now - timedelta(days=1) if revoked else None,
                revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.certificate)
            # OpenSSL's OCSP_basic_verify looks for the signer among the response's certificates.
            .certificates([self.certificate])
            .sign(self.key, hashes.SHA256())
        )
        path.write_bytes(response.public_bytes(serialization.Encoding.DER))
        return path
