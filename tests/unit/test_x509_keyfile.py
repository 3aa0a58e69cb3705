"""The host side of the certificate module without python3-cryptography: keys made with the real
ssh-keygen, public keys and certificates read with the standard library, nothing private returned."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.tls_pki import TestCa, new_key, self_signed_without_san
from tests.unit.module_loader import ROOT, library, module_utils

K = module_utils("preaudit_keyfile")
M = library("x509_certificate", uses=("preaudit_keyfile", "preaudit_x509"))
NAMES = ["sim-1", "montecarlo.lab"]
SSH_KEYGEN = shutil.which("ssh-keygen")

pytestmark = pytest.mark.skipif(SSH_KEYGEN is None, reason="needs ssh-keygen (openssh-client)")


class HostModule:
    """What the module's inspect and install need from AnsibleModule."""

    def __init__(self, check_mode: bool = False) -> None:
        self.params: dict[str, Any] = {"state": "inspect"}
        self.check_mode = check_mode

    def fail_json(self, **kwargs: Any) -> None:
        raise AssertionError(kwargs["msg"])

    def get_bin_path(self, name: str) -> str | None:
        return shutil.which(name)


def _spki(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "private_bytes") else key
    der: bytes = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _pem(key: Any, fmt: serialization.PrivateFormat, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    data: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, encryption)
    return data


def _ssh_keygen_public(path: Path) -> bytes:
    """What ssh-keygen itself says the key's public key is (it needs a 0600 key and no KEY.pub)."""
    result = subprocess.run([SSH_KEYGEN or "", "-e", "-m", "PKCS8", "-f", str(path)], capture_output=True, check=True)
    return result.stdout


def _spec(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **M.CERT_DEFAULTS,
        "name": "web",
        "certificate": str(tmp_path / "tls" / "web.crt"),
        "private_key": str(tmp_path / "tls" / "web.key"),
        "names": NAMES,
        "provider": "ca",
        **extra,
    }


@pytest.mark.parametrize(
    ("kind", "fmt", "description"),
    [
        ("ec256", serialization.PrivateFormat.PKCS8, "EC secp256r1"),
        ("ec384", serialization.PrivateFormat.TraditionalOpenSSL, "EC secp384r1"),
        ("rsa2048", serialization.PrivateFormat.PKCS8, "RSA 2048"),
        ("rsa2048", serialization.PrivateFormat.TraditionalOpenSSL, "RSA 2048"),
    ],
)
def test_the_public_key_of_every_pem_key_format(kind: str, fmt: serialization.PrivateFormat, description: str) -> None:
    key = new_key(kind)
    spki = K.private_key_spki(_pem(key, fmt))
    assert spki == _spki(key)
    assert K.describe(spki) == description
    # The PEM form is byte for byte what `ssh-keygen -e -m PKCS8` prints.
    assert K.pem("PUBLIC KEY", spki) == _spki_pem(key)


def _spki_pem(key: Any) -> bytes:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def test_keys_that_cannot_serve_are_named() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert K.describe(K.private_key_spki(_pem(p521, serialization.PrivateFormat.PKCS8))) == "EC secp521r1"
    k1 = ec.generate_private_key(ec.SECP256K1())
    assert K.describe(K.private_key_spki(_pem(k1, serialization.PrivateFormat.PKCS8))) == "EC 1.3.132.0.10"
    with pytest.raises(K.KeyFileError, match=r"unsupported private key type 1\.3\.101\.112"):
        K.private_key_spki(_pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8))
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        with pytest.raises(K.KeyFileError, match="encrypted"):
            K.private_key_spki(_pem(new_key("ec256"), fmt, b"secret"))
    with pytest.raises(K.KeyFileError, match="no PEM private key"):
        K.private_key_spki(b"hello")
    with pytest.raises(K.KeyFileError, match="unreadable PEM block"):
        K.private_key_spki(K.pem("PRIVATE KEY", b"").replace(b"\n\n", b"\n!!!\n"))
    with pytest.raises(K.KeyFileError, match=r"malformed|truncated|unexpected"):
        K.private_key_spki(K.pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00"))


def test_a_certificate_file_gives_up_its_certificates_and_nothing_else(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    pair = ca.issue("leaf", NAMES, key_kind="rsa2048")
    combined = pair.key_file.read_bytes() + pair.cert_file.read_bytes() + ca.ca_file.read_bytes()
    found = K.certificates(combined)
    assert len(found) == 2
    assert K.certificate_spki(found[0]) == _spki(pair.certificate.public_key())
    assert K.certificate_spki(found[0]) == K.private_key_spki(combined)


@pytest.mark.parametrize(("key_type", "size", "curve", "description"), [
    ("ec", 3072, "secp256r1", "EC secp256r1"),
    ("ec", 3072, "secp384r1", "EC secp384r1"),
    ("rsa", 2048, "secp256r1", "RSA 2048"),
])  # fmt: skip
def test_ssh_keygen_makes_the_key_in_place(
    tmp_path: Path, key_type: str, size: int, curve: str, description: str
) -> None:
    path = tmp_path / "tls" / "server.key"
    K.create_key(str(path), key_type, size, curve, SSH_KEYGEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["server.key"]  # no .pub, no work directory left
    spki = K.private_key_spki(path.read_bytes())
    assert K.describe(spki) == description
    assert K.pem("PUBLIC KEY", spki) == _ssh_keygen_public(path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)  # what nginx reads: PEM
    assert _spki(loaded) == spki
    assert isinstance(loaded, ec.EllipticCurvePrivateKey if key_type == "ec" else rsa.RSAPrivateKey)


def test_ssh_keygen_options_refuse_what_it_cannot_make() -> None:
    with pytest.raises(K.KeyFileError, match="unsupported curve brainpool"):
        K.ssh_keygen_options("ec", 3072, "brainpool")
    with pytest.raises(K.KeyFileError, match="at least 2048"):
        K.ssh_keygen_options("rsa", 1024, "secp256r1")
    with pytest.raises(K.KeyFileError, match="unsupported key type dsa"):
        K.ssh_keygen_options("dsa", 1024, "secp256r1")
    assert K.ssh_keygen_options("rsa", 3072, "secp256r1") == ["-t", "rsa", "-b", "3072"]


# -- state=inspect and state=install on the host ----------------------------------------------


def test_inspect_makes_the_key_once_and_returns_only_public_data(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = M.inspect(HostModule(), spec)
    key_file = Path(spec["private_key"])
    assert first["changed"] and first["key_created"] and first["key"] == "EC secp256r1"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        assert (key_file.stat().st_uid, key_file.stat().st_gid) == (0, 0)
    assert first["public_key"].encode() == _ssh_keygen_public(key_file)
    assert "certificate_pem" not in first  # no certificate file yet
    # Public data only: the private value appears nowhere, in text or inside the PEM returned.
    private = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    secret = private.private_numbers().private_value.to_bytes(32, "big")
    text = json.dumps(first)
    assert "PRIVATE" not in text and secret.hex() not in text
    assert all(secret not in der for _label, der, _enc in K.pem_blocks(first["public_key"].encode()))

    key_before = key_file.read_bytes()
    again = M.inspect(HostModule(), spec)
    assert not again["changed"] and not again["key_created"] and again["reasons"] == []
    assert again["public_key"] == first["public_key"] and key_file.read_bytes() == key_before


def test_inspect_replaces_a_key_of_the_wrong_type_and_fixes_a_loose_mode(tmp_path: Path) -> None:
    legacy = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    legacy.key_file.chmod(0o644)  # what the lab image ships: RSA 2048, world-readable
    spec = _spec(tmp_path, certificate=str(legacy.cert_file), private_key=str(legacy.key_file))
    result = M.inspect(HostModule(), spec)
    assert result["reasons"] == ["key is RSA 2048, wanted EC secp256r1"]
    assert result["key_created"] and result["key"] == "EC secp256r1"
    assert stat.S_IMODE(legacy.key_file.stat().st_mode) == 0o600
    assert K.certificates(legacy.cert_file.read_bytes())[0] == K.certificates(result["certificate_pem"].encode())[0]

    legacy.key_file.chmod(0o640)
    fixed = M.inspect(HostModule(), spec)
    assert fixed["changed"] and fixed["key_mode_fixed"] and not fixed["key_created"]
    assert stat.S_IMODE(legacy.key_file.stat().st_mode) == 0o600


def test_inspect_never_changes_a_supplied_key(tmp_path: Path) -> None:
    legacy = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    before = legacy.key_file.read_bytes()
    spec = _spec(tmp_path, provider="supplied", certificate=str(legacy.cert_file), private_key=str(legacy.key_file))
    result = M.inspect(HostModule(), spec)
    assert not result["key_created"] and result["key"] == "RSA 2048" and result["reasons"] == []
    assert legacy.key_file.read_bytes() == before
    missing = M.inspect(HostModule(), _spec(tmp_path / "none", provider="supplied"))
    assert not missing["key_created"] and not (tmp_path / "none").exists()


def test_inspect_in_check_mode_writes_nothing(tmp_path: Path) -> None:
    fresh = _spec(tmp_path / "fresh")
    result = M.inspect(HostModule(check_mode=True), fresh)
    assert result["changed"] and result["key_created"] and "public_key" not in result
    assert not (tmp_path / "fresh").exists()

    legacy = self_signed_without_san(tmp_path, "legacy", "montecarlo.lab")
    legacy.key_file.chmod(0o644)
    before = (legacy.key_file.read_bytes(), legacy.key_file.stat().st_mode)
    spec = _spec(tmp_path, certificate=str(legacy.cert_file), private_key=str(legacy.key_file))
    assert M.inspect(HostModule(check_mode=True), spec)["key_created"]
    assert (legacy.key_file.read_bytes(), legacy.key_file.stat().st_mode) == before
    assert sorted(os.listdir(tmp_path)) == ["legacy.crt", "legacy.key"]


def test_install_writes_only_a_certificate_for_the_hosts_key(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    spec = _spec(tmp_path)
    M.inspect(HostModule(), spec)
    wrong = ca.issue("wrong", NAMES)
    with pytest.raises(AssertionError, match="does not certify the key"):
        M.install(HostModule(), spec, wrong.cert_file.read_text())
    assert not Path(spec["certificate"]).exists()

    right = ca.issue("right", NAMES)  # for another key: only a key match may pass
    Path(spec["private_key"]).write_bytes(right.key_file.read_bytes())
    check = M.install(HostModule(check_mode=True), spec, right.cert_file.read_text() + ca.ca_file.read_text())
    assert check["changed"] and not Path(spec["certificate"]).exists()
    done = M.install(HostModule(), spec, right.cert_file.read_text() + ca.ca_file.read_text())
    assert done["action"] == "installed"
    assert Path(spec["certificate"]).read_bytes() == right.cert_file.read_bytes() + ca.ca_file.read_bytes()
    assert stat.S_IMODE(Path(spec["certificate"]).stat().st_mode) == 0o644


# The module as a host without python3-cryptography runs it: inspect and install work, present says why not.
NO_CRYPTOGRAPHY = """
import json, sys
sys.modules["cryptography"] = None  # any import of it now raises ImportError
sys.path.insert(0, sys.argv[1])
import ansible.module_utils
ansible.module_utils.__path__.append(sys.argv[1] + "/module_utils")  # where Ansible's packaging finds them
import importlib.util
spec = importlib.util.spec_from_file_location("x509_certificate", sys.argv[1] + "/library/x509_certificate.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
class Module:
    params = {"state": "inspect"}
    check_mode = False
    def fail_json(self, **kw): raise SystemExit(kw["msg"])
    def get_bin_path(self, name):
        import shutil
        return shutil.which(name)
cert = dict(m.CERT_DEFAULTS, name="web", certificate=sys.argv[2] + "/web.crt", private_key=sys.argv[2] + "/web.key",
            names=["sim-1"], provider="ca")
print(json.dumps({"import_error": m.IMPORT_ERROR, "inspect": m.inspect(Module(), cert)}))
"""


def test_inspect_runs_where_cryptography_cannot_be_imported(tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(NO_CRYPTOGRAPHY)
    result = subprocess.run(
        [sys.executable, str(script), str(ROOT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["import_error"] and "cryptography" in out["import_error"]
    assert out["inspect"]["key_created"] and out["inspect"]["key"] == "EC secp256r1"
    assert out["inspect"]["public_key"].encode() == _ssh_keygen_public(tmp_path / "web.key")
