"""The lab CA: made once on the controller, private key 0600, named in the lab inventory."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml
from cryptography import x509

from scanners.lab.ca import ca_paths, ensure_ca
from scanners.lab.fleet import Fleet, LabState
from scanners.lab.settings import LabSettings


def test_the_lab_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    settings = LabSettings.isolated(tmp_path / "lab", "t1")
    paths = ensure_ca(settings)
    assert paths == ca_paths(settings)
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.ca_dir.stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(paths.certificate.read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert "preaudit lab CA (t1)" in cert.subject.rfc4514_string()

    before = paths.certificate.read_bytes()
    paths.private_key.chmod(0o644)
    ensure_ca(settings)
    assert paths.certificate.read_bytes() == before
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600


def test_the_inventory_names_the_ca_for_tls_hardening(tmp_path: Path) -> None:
    settings = LabSettings.isolated(tmp_path / "lab", "t2")
    inventory = yaml.safe_load(Fleet(settings).write_inventory(LabState(prefix="t2")).read_text())
    variables = inventory["all"]["vars"]
    paths = ca_paths(settings)
    assert variables["tls_hardening_ca_cert"] == str(paths.certificate)
    assert variables["tls_hardening_ca_key"] == str(paths.private_key)
    assert paths.private_key.exists()
