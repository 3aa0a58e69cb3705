"""Signing keys and the evidence bundle: any change to any file is detected and named, and a
hostile tarball is read safely."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scanners.errors import InputError
from scanners.report import (
    generate_keypair,
    load_private_key,
    load_public_key,
    verify_bundle,
    write_bundle,
    write_exports,
)
from scanners.report.bundle import MANIFEST, PUBLIC_KEY, ROOT, SIGNATURE, BundleInfo, manifest_text
from scanners.report.keys import PASSPHRASE_ENV, fingerprint, public_pem
from scanners.report.safe_tar import Limits
from tests.unit.report_fixtures import fleet_report

Members = dict[str, bytes]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    pair = generate_keypair(tmp_path / "keys")
    return pair.private_path, pair.public_path


def _bundle(tmp_path: Path, private: Path, raw: Path | None = None) -> BundleInfo:
    report, findings_path = fleet_report(tmp_path)
    exports = write_exports(report, tmp_path / "out", ["all"])
    return write_bundle(
        tmp_path / "evidence.tar.gz",
        report=report,
        exports=exports,
        signing_key=load_private_key(private),
        inputs={"findings.json": findings_path, "baseline.json": tmp_path / "baseline.json"},
        raw_dir=raw,
    )


def _members(path: Path) -> Members:
    with tarfile.open(path, "r:gz") as archive:
        return {
            m.name.removeprefix(f"{ROOT}/"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isreg()
        }


def _rewrite(path: Path, members: Members) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _tampered(path: Path, change: Callable[[Members], None]) -> Path:
    members = _members(path)
    change(members)
    _rewrite(path, members)
    return path


# --- keys ----------------------------------------------------------------------------------------


def test_generated_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    assert pair.private_path.stat().st_mode & 0o777 == 0o600
    assert pair.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert not pair.encrypted
    assert pair.fingerprint == fingerprint(load_public_key(pair.public_path))
    assert pair.fingerprint.startswith("sha256:") and len(pair.fingerprint) == 7 + 64
    assert fingerprint(load_private_key(pair.private_path).public_key()) == pair.fingerprint
    before = pair.private_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(tmp_path / "k")
    assert pair.private_path.read_bytes() == before


def test_encrypted_key_needs_the_right_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = generate_keypair(tmp_path / "k", passphrase=b"correct horse battery staple")
    assert pair.encrypted and b"ENCRYPTED" in pair.private_path.read_bytes()
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(InputError, match=f"signing key is encrypted: set {PASSPHRASE_ENV}"):
        load_private_key(pair.private_path)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
    with pytest.raises(InputError, match="wrong passphrase") as raised:
        load_private_key(pair.private_path)
    assert "wrong horse" not in str(raised.value)
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    assert fingerprint(load_private_key(pair.private_path).public_key()) == pair.fingerprint


def test_keys_readable_by_others_or_of_another_kind_are_refused(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    pair.private_path.chmod(0o640)
    with pytest.raises(InputError, match=r"accessible by other users \(mode 640\); chmod 600"):
        load_private_key(pair.private_path)
    other = tmp_path / "ec.key"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    other.chmod(0o600)
    with pytest.raises(InputError, match="must be Ed25519"):
        load_private_key(other)
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(InputError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


# --- writing and verifying -----------------------------------------------------------------------


def test_intact_bundle_verifies_with_the_pinned_key(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    info = _bundle(tmp_path, private)
    result = verify_bundle(info.path, load_public_key(public))
    assert result.ok, result.problems
    assert (result.key_source, result.warnings) == ("pinned", [])
    assert result.key_fingerprint == info.key_fingerprint == fingerprint(load_public_key(public))
    names = set(_members(info.path))
    assert {f"exports/{n}" for n in ("report.html", "findings.sarif", "ocsf.json", "junit.xml")} <= names
    assert {"input/findings.json", "input/baseline.json", "metadata.json", PUBLIC_KEY, MANIFEST, SIGNATURE} <= names
    assert result.files_checked == info.files == len(names) - 2  # all but the manifest and its signature


def test_embedded_key_verification_is_flagged_as_weaker(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])
    result = verify_bundle(info.path)
    assert result.ok and result.key_source == "embedded"
    assert "not who signed them" in result.warnings[0] and "--public-key" in result.warnings[0]


def test_metadata_records_catalog_tools_scan_and_hosts(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])
    metadata = json.loads(_members(info.path)["metadata.json"])
    assert metadata["catalog"]["version"] == "2026.11" and len(metadata["catalog"]["digest"]) == 64
    assert metadata["rendering_catalog"] == metadata["catalog"]  # rendered with the scan's own catalog
    versions = metadata["tool_versions"]
    assert versions["preaudit"] == "0.1.0" and versions["scan:sslyze"] == "6.3.1"
    assert {"python", "cryptography", "Jinja2"} <= set(versions)
    assert metadata["scan"]["started_at"] == "2026-11-20T09:00:00Z" and metadata["scan"]["id"] == "scan-current"
    assert metadata["hosts"] == ["sim-1", "sim-2", "sim-3"]
    assert metadata["signing_key"] == {"algorithm": "Ed25519", "fingerprint": info.key_fingerprint}
    assert "exports/report.html" in metadata["contents"]["exports"]


def _append_row(m: Members) -> None:
    m["exports/findings.csv"] += b"x,y\r\n"


def _plant(m: Members) -> None:
    m["exports/extra.txt"] = b"planted"


def _drop_input(m: Members) -> None:
    m.pop("input/findings.json")


def _rename_host(m: Members) -> None:
    m["metadata.json"] = m["metadata.json"].replace(b"sim-3", b"sim-9")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_append_row, ["modified: exports/findings.csv"]),
        (_plant, ["added: exports/extra.txt"]),
        (_drop_input, ["removed: input/findings.json"]),
        (_rename_host, ["modified: metadata.json"]),
    ],
    ids=["modified-export", "added-file", "removed-file", "modified-metadata"],
)
def test_any_changed_file_is_named(
    tmp_path: Path, keys: tuple[Path, Path], change: Callable[[Members], None], expected: list[str]
) -> None:
    info = _bundle(tmp_path, keys[0])
    result = verify_bundle(_tampered(info.path, change), load_public_key(keys[1]))
    assert not result.ok
    assert result.problems == expected


def test_a_changed_manifest_breaks_the_signature(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])

    def forge(m: Members) -> None:
        # An attacker edits an export and writes its new hash into the manifest.
        m["exports/findings.csv"] = b"fingerprint,status\r\nabc,pass\r\n"
        listed = {}
        for line in m[MANIFEST].decode().splitlines():
            digest, name = line.split("  ", 1)
            listed[name] = digest
        listed["exports/findings.csv"] = hashlib.sha256(m["exports/findings.csv"]).hexdigest()
        m[MANIFEST] = manifest_text(listed)

    result = verify_bundle(_tampered(info.path, forge), load_public_key(keys[1]))
    assert not result.ok
    assert len(result.problems) == 1 and result.problems[0].startswith("bad signature: MANIFEST.sha256 was changed")


def test_a_changed_or_missing_signature_is_detected(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])
    original = _members(info.path)[SIGNATURE]
    flipped = bytearray(base64.b64decode(original))
    flipped[0] ^= 0x01

    def flip(m: Members) -> None:
        m[SIGNATURE] = base64.b64encode(bytes(flipped)) + b"\n"

    result = verify_bundle(_tampered(info.path, flip), load_public_key(keys[1]))
    assert [p.split(":")[0] for p in result.problems] == ["bad signature"]

    def drop(m: Members) -> None:
        m.pop(SIGNATURE)

    result = verify_bundle(_tampered(info.path, drop), load_public_key(keys[1]))
    assert result.problems == [f"removed: {SIGNATURE} (the bundle is unsigned)"]


def test_a_bundle_re_signed_with_another_key_fails_only_against_the_pinned_key(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    info = _bundle(tmp_path, keys[0])
    attacker = Ed25519PrivateKey.generate()

    def resign(m: Members) -> None:
        m["exports/findings.csv"] = b"everything,passed\r\n"
        m[PUBLIC_KEY] = public_pem(attacker.public_key())
        listed = {
            name: hashlib.sha256(data).hexdigest() for name, data in m.items() if name not in (MANIFEST, SIGNATURE)
        }
        m[MANIFEST] = manifest_text(listed)
        m[SIGNATURE] = base64.b64encode(attacker.sign(m[MANIFEST])) + b"\n"

    forged = _tampered(info.path, resign)
    # The bundle's own key vouches for the forgery: why embedded verification is only a warning.
    assert verify_bundle(forged).ok
    pinned = verify_bundle(forged, load_public_key(keys[1]))
    assert not pinned.ok
    assert any(p.startswith("bad signature") for p in pinned.problems)
    assert any(p.startswith(f"{PUBLIC_KEY} in the bundle") and "is not the pinned key" in p for p in pinned.problems)


def test_raw_outputs_go_in_and_symlinks_are_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    raw = tmp_path / "raw"
    (raw / "bandit").mkdir(parents=True)
    (raw / "bandit" / "report.json").write_text('{"results": []}')
    (raw / "sslyze.json").write_text("{}")
    info = _bundle(tmp_path, keys[0], raw=raw)
    members = _members(info.path)
    assert members["raw/bandit/report.json"] == b'{"results": []}' and "raw/sslyze.json" in members
    assert verify_bundle(info.path, load_public_key(keys[1])).ok
    (raw / "shadow").symlink_to("/etc/shadow")
    with pytest.raises(InputError, match="must not contain symbolic links"):
        _bundle(tmp_path / "again", keys[0], raw=raw)


def test_anyone_can_verify_with_openssl_and_sha256sum(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])
    out = tmp_path / "extracted"
    with tarfile.open(info.path, "r:gz") as archive:
        archive.extractall(out, filter="data")  # our own bundle, extracted with the safe filter
    root = out / ROOT
    (tmp_path / "sig.bin").write_bytes(base64.b64decode((root / SIGNATURE).read_bytes()))
    sums = subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST], cwd=root, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(keys[1]), "-rawin"]
    command += ["-in", str(root / MANIFEST), "-sigfile", str(tmp_path / "sig.bin")]
    good = subprocess.run(command, capture_output=True, text=True)
    assert good.returncode == 0 and "Signature Verified Successfully" in good.stdout
    (root / MANIFEST).write_bytes((root / MANIFEST).read_bytes().replace(b"exports/", b"exportz/", 1))
    assert subprocess.run(command, capture_output=True, text=True).returncode != 0


# --- hostile archives ----------------------------------------------------------------------------


def _hostile(path: Path, *members: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_info(f"{ROOT}/exports/escape", tarfile.SYMTYPE, "/etc/shadow"), "symbolic link to '/etc/shadow'"),
        (_info(f"{ROOT}/exports/hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link to '/etc/passwd'"),
        (_info(f"{ROOT}/dev", tarfile.CHRTYPE), "device file"),
        (_info("/etc/cron.d/evil", size=4), "absolute path"),
        (_info(f"{ROOT}/../../evil", size=4), "climbs out"),
        (_info("elsewhere/file", size=4), "outside the bundle directory"),
    ],
    ids=["symlink", "hardlink", "device", "absolute", "traversal", "outside-root"],
)
def test_hostile_members_are_reported_and_never_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: tarfile.TarInfo, reason: str
) -> None:
    path = _hostile(tmp_path / "evil.tar.gz", member, data=b"evil")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = verify_bundle(path)
    assert not result.ok
    assert any(reason in p for p in result.problems), result.problems
    assert list(workdir.iterdir()) == []  # nothing was written anywhere


def test_size_and_count_limits_stop_reading(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    info = _bundle(tmp_path, keys[0])
    tight = verify_bundle(info.path, limits=Limits(max_member_bytes=4096))
    assert not tight.ok and any("exceeds the size limit: stopped reading" in p for p in tight.problems)
    few = verify_bundle(info.path, limits=Limits(max_members=3))
    assert not few.ok and "more than 3 members: stopped reading" in few.problems


def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    info = _info(f"{ROOT}/MANIFEST.sha256", size=0)
    info.pax_headers = {"comment": "x" * (2 << 20)}  # tarfile would read this into memory whole
    result = verify_bundle(_hostile(tmp_path / "bomb.tar.gz", info))
    assert not result.ok
    assert any("archive is damaged or not a tar.gz" in p and "extended header" in p for p in result.problems)


def test_not_a_bundle_at_all(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(os.urandom(2048))
    result = verify_bundle(tmp_path / "junk.tar.gz")
    assert not result.ok and any("not a tar.gz" in p for p in result.problems)
    with pytest.raises(InputError, match="no such bundle"):
        verify_bundle(tmp_path / "missing.tar.gz")
