# Copyright: preaudit contributors. Apache-2.0.
"""Certificate logic of the x509_certificate module: keys, issuing and validation.

Pure functions on ``cryptography`` objects (no file or network access), so that the module's
decisions are unit-tested on the controller. They run on the controller (judging, issuing with the
CA) and, for self-signed certificates only, on a target with Debian 12's python3-cryptography
(38.0): nothing newer than that version's API is used (no ``load_pem_x509_certificates``, no
``verify_directly_issued_by``, the ``*_utc`` validity properties only when present).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

UTC = datetime.UTC
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}
WEAK_SIGNATURE_HASHES = frozenset(["md5", "sha1"])
# Start validity a little in the past: clients with a clock slightly behind accept the certificate.
BACKDATE = datetime.timedelta(minutes=5)


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class CertificateError(Exception):
    """Input that cannot be parsed or used (not a key, not a certificate, unsupported type)."""


# -- reading ------------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every PEM certificate in ``data``, in file order (leaf first in a chain file)."""
    blocks = PEM_CERTIFICATE.findall(data or b"")
    if not blocks:
        raise CertificateError("no PEM certificate found")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise CertificateError(f"unreadable certificate: {exc}") from None


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"unreadable private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CertificateError(f"unsupported private key type {type(key).__name__} (EC or RSA only)")
    return key


def load_public_key(data: bytes) -> PublicKey:
    """A PEM SubjectPublicKeyInfo (what the host reports for its private key)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"unreadable public key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CertificateError(f"unsupported public key type {type(key).__name__} (EC or RSA only)")
    return key


def not_before(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=UTC)


def not_after(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=UTC)


# -- keys ---------------------------------------------------------------------------------


def key_description(key: object) -> str:
    """``EC secp256r1`` or ``RSA 3072`` (private or public key)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"EC {key.curve.name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA {key.key_size}"
    return type(key).__name__


def wanted_key_description(key_type: str, size: int, curve: str) -> str:
    return f"EC {curve}" if key_type == "ec" else f"RSA {size}"


def new_private_key(key_type: str, size: int = 3072, curve: str = "secp256r1") -> PrivateKey:
    if key_type == "ec":
        if curve not in CURVES:
            raise CertificateError(f"unsupported curve {curve} ({', '.join(sorted(CURVES))})")
        return ec.generate_private_key(CURVES[curve]())
    if key_type == "rsa":
        if size < 2048:
            raise CertificateError(f"RSA keys must have at least 2048 bits, not {size}")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    raise CertificateError(f"unsupported key type {key_type} (ec or rsa)")


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key: object) -> bytes:
    public = key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) else key
    if not isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CertificateError(f"unsupported key type {key_description(key)} (EC or RSA only)")
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(key: object, cert: x509.Certificate) -> bool:
    """True when ``cert`` certifies the public half of ``key``."""
    return _spki(key) == _spki(cert.public_key())


def key_strength_problem(key: object, min_rsa_bits: int, curves: list[str]) -> str | None:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < min_rsa_bits:
            return f"RSA key of {key.key_size} bits, fewer than {min_rsa_bits}"
        return None
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if key.curve.name not in curves:
            return f"EC key on curve {key.curve.name}, not one of {', '.join(curves)}"
        return None
    return f"unsupported key type {key_description(key)}"


# -- names and extensions -----------------------------------------------------------------


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def _covers(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        return name.split(".", 1)[1] == pattern[2:]
    return False


def missing_names(cert: x509.Certificate, names: list[str]) -> list[str]:
    """The ``names`` the certificate's subjectAltName does not cover (the CN is not looked at)."""
    sans = subject_alt_names(cert)
    return [n for n in names if not any(_covers(s, n) for s in sans)]


def ocsp_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for description in aia:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)
    return None


def signature_hash(cert: x509.Certificate) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # an algorithm this cryptography does not know
        return "unknown"
    return algorithm.name if algorithm is not None else "none"


def self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s name and key signed ``cert``."""
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(public, rsa.RSAPublicKey) and algorithm is not None:
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey) and algorithm is not None:
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


# -- validation ---------------------------------------------------------------------------


def validate(
    chain: list[x509.Certificate],
    key: object | None,
    names: list[str],
    now: datetime.datetime,
    renew_days: int,
    min_rsa_bits: int = 2048,
    curves: list[str] | None = None,
    max_days: int | None = None,
    ca: x509.Certificate | None = None,
) -> list[str]:
    """Every reason ``chain`` (leaf first) and ``key`` are not fit to serve ``names``; [] when fit.

    Checks: the key matches the leaf; the leaf is valid now and for ``renew_days`` more days; its
    lifespan is at most ``max_days``; key size or curve; no MD5/SHA-1 signature in the chain; the
    subjectAltName covers every name; each certificate is issued by the next one (chain order);
    and, with ``ca``, the chain ends at a certificate ``ca`` issued (or at ``ca`` itself).
    """
    curves = curves if curves is not None else ["secp256r1", "secp384r1"]
    problems: list[str] = []
    if not chain:
        return ["no certificate"]
    leaf = chain[0]
    if key is not None and not key_matches(key, leaf):
        problems.append("the private key does not match the certificate")
    start, end = not_before(leaf), not_after(leaf)
    if now < start:
        problems.append(f"not valid before {start:%Y-%m-%d %H:%M} UTC")
    if end <= now:
        problems.append(f"expired on {end:%Y-%m-%d}")
    elif end - now < datetime.timedelta(days=renew_days):
        problems.append(f"expires on {end:%Y-%m-%d}, within {renew_days} days")
    if max_days is not None and (end - start) > datetime.timedelta(days=max_days, hours=1):
        problems.append(f"valid for {(end - start).days} days, more than {max_days}")
    weak = key_strength_problem(leaf.public_key(), min_rsa_bits, curves)
    if weak:
        problems.append(weak)
    for index, cert in enumerate(chain):
        digest = signature_hash(cert)
        if digest in WEAK_SIGNATURE_HASHES and not (index > 0 and self_issued(cert)):
            what = "the certificate" if index == 0 else f"chain certificate {index}"
            problems.append(f"{what} signed with {digest.upper()}")
    missing = missing_names(leaf, names)
    if missing:
        problems.append(f"subjectAltName lacks {', '.join(missing)}")
    for index in range(len(chain) - 1):
        if not issued_by(chain[index], chain[index + 1]):
            problems.append(f"chain order: certificate {index} is not issued by certificate {index + 1}")
    if ca is not None:
        last = chain[-1]
        if not (certificate_pem(last) == certificate_pem(ca) or issued_by(last, ca)):
            problems.append(f"not issued by the CA {ca.subject.rfc4514_string()}")
    return problems


# -- issuing ------------------------------------------------------------------------------


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _leaf_builder(
    public: PublicKey, names: list[str], issuer: x509.Name, now: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days) - BACKDATE)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def self_signed(key: PrivateKey, names: list[str], now: datetime.datetime, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return _leaf_builder(key.public_key(), names, name, now, days).sign(key, hashes.SHA256())


def issue(
    public: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    names: list[str],
    now: datetime.datetime,
    days: int,
) -> x509.Certificate:
    """A server certificate for a host's public key and ``names``, signed by the CA.

    No certificate signing request: the public key comes from the host that holds the private key
    over the authenticated connection the controller manages it with, and the names from the
    inventory, so a request's proof of possession and requested names would add nothing.
    """
    if not isinstance(public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CertificateError(f"unsupported key type {key_description(public)} (EC or RSA only)")
    if not key_matches(ca_key, ca_cert):
        raise CertificateError("the CA key does not match the CA certificate")
    # Never issue beyond the CA's own validity.
    days = min(days, max(1, (not_after(ca_cert) - now).days))
    builder = _leaf_builder(public, names, ca_cert.subject, now, days)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    except x509.ExtensionNotFound:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())
