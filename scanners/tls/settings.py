"""What a TLS scan expects: the Mozilla profile it measures against and the caller's thresholds.

Bad values are the caller's mistake and raise ``InputError`` before anything is scanned.
"""

from __future__ import annotations

import contextlib
import math
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from sslyze.mozilla_tls_profile.tls_config_checker import (
    MozillaTlsConfiguration,
    TlsConfigurationAsJson,
    TlsConfigurationEnum,
)
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository

from scanners.errors import InputError

PROFILES = {"intermediate": TlsConfigurationEnum.MOZILLA_INTERMEDIATE, "modern": TlsConfigurationEnum.MOZILLA_MODERN}
# Mozilla's profile has no RSA minimum for "modern" (it expects ECDSA certificates); an RSA
# certificate there must at least match NIST's 128-bit security level.
MODERN_MIN_RSA_BITS = 3072
DEFAULT_MIN_RSA_BITS = 2048
# "ffdhe2048 or larger": the floor when the profile names no DH size.
MIN_DH_BITS = 2048
NEGATIVE_SERIAL_WARNING = "Parsed a serial number which wasn't positive"
# Mozilla's version names; reports say TLSv1.0 where Mozilla says TLSv1.
_VERSION_DISPLAY = {"TLSv1": "TLSv1.0"}


@contextlib.contextmanager
def quiet_trust_store_warnings() -> Iterator[None]:
    """Hide cryptography's warning about roots with a negative serial number while trust stores load.

    Debian's store and sslyze's bundled ones hold such a root; the warning is about the store, not
    the scanned server, and would otherwise reach every user's terminal. The filter is process-wide
    while active (Python's warning filters are), so it matches that one message only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NEGATIVE_SERIAL_WARNING, category=CryptographyDeprecationWarning)
        yield


def display_version(mozilla_name: str) -> str:
    return _VERSION_DISPLAY.get(mozilla_name, mozilla_name)


@dataclass(frozen=True)
class TrustAnchors:
    """The certificates TLS-006 trusts and how a report names them."""

    path: Path
    label: str
    certificates: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class ScanSettings:
    timeout: float
    min_days_valid: int
    hsts_min_age: int
    profile_name: str
    profile: TlsConfigurationAsJson
    anchors: TrustAnchors
    # Passed to sslyze so that its path validation (and the Mozilla checker) trusts what we trust.
    sslyze_ca_file: Path

    @property
    def network_timeout(self) -> int:
        """sslyze wants whole seconds."""
        return max(1, math.ceil(self.timeout))

    @property
    def min_rsa_bits(self) -> int:
        if self.profile_name == "modern":
            return MODERN_MIN_RSA_BITS
        return self.profile.rsa_key_size or DEFAULT_MIN_RSA_BITS

    @property
    def min_dh_bits(self) -> int:
        return self.profile.dh_param_size or MIN_DH_BITS

    @property
    def allowed_versions(self) -> list[str]:
        return sorted(display_version(v) for v in self.profile.tls_versions)


def _load_anchor_file(path: Path, label: str) -> TrustAnchors:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"CA file {path}: cannot read: {exc.strerror or exc}") from None
    try:
        with quiet_trust_store_warnings():
            certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise InputError(f"CA file {path}: no PEM certificate in it") from None
    return TrustAnchors(path, label, certificates)


def trust_anchors(ca_file: Path | None) -> TrustAnchors:
    """The CA file given, else the system trust store, else sslyze's copy of Mozilla's store."""
    if ca_file is not None:
        return _load_anchor_file(Path(ca_file), f"CA file {Path(ca_file).name}")
    system = ssl.get_default_verify_paths().cafile
    if system and Path(system).is_file():
        return _load_anchor_file(Path(system), "system trust store")
    with quiet_trust_store_warnings():
        mozilla = TrustStoresRepository.get_default().get_main_store()
    return _load_anchor_file(mozilla.path, f"Mozilla trust store {mozilla.version} (bundled with sslyze)")


def build_settings(
    *, timeout: float, min_days_valid: int, ca_file: Path | None, profile: str, hsts_min_age: int
) -> ScanSettings:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise InputError(f"TLS scan timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(min_days_valid, int) or min_days_valid < 0:
        raise InputError(f"TLS minimum days of certificate validity must be 0 or more, not {min_days_valid!r}")
    if not isinstance(hsts_min_age, int) or hsts_min_age < 0:
        raise InputError(f"HSTS minimum max-age must be 0 or more seconds, not {hsts_min_age!r}")
    if profile not in PROFILES:
        raise InputError(f"unknown TLS profile {profile!r} (expected one of: {', '.join(PROFILES)})")
    anchors = trust_anchors(ca_file)
    return ScanSettings(
        timeout=float(timeout),
        min_days_valid=min_days_valid,
        hsts_min_age=hsts_min_age,
        profile_name=profile,
        profile=MozillaTlsConfiguration.get(PROFILES[profile]),
        anchors=anchors,
        sslyze_ca_file=anchors.path,
    )
