"""The signed evidence bundle: every export, the inputs and raw scanner outputs, metadata, a
SHA-256 manifest and an Ed25519 signature of it, in one tar.gz.

Layout (all under ``preaudit-evidence/``)::

    MANIFEST.sha256      sha256sum format: "<hex>  <path>" for every other file
    MANIFEST.sig         base64 Ed25519 signature of MANIFEST.sha256, as it is, byte for byte
    signing-key.pub      the public key (PEM); also listed in the manifest
    metadata.json        catalog version and digest, tool versions, scan time, hosts, key fingerprint
    exports/...          the report files
    input/...            the findings document (and baseline, waivers) the report was made from
    raw/...              raw scanner outputs given with --raw

Anyone can check it without preaudit: ``sha256sum -c MANIFEST.sha256`` inside the directory, and
``openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in MANIFEST.sha256 -sigfile SIG.bin``
with the base64-decoded signature and a public key obtained separately (README, "Evidence
bundles and signing keys").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import platform
import re
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scanners.errors import InputError
from scanners.findings import format_timestamp, utcnow
from scanners.fsutil import atomic_writer
from scanners.report.keys import fingerprint, parse_public_key, public_pem
from scanners.report.model import Report
from scanners.report.safe_tar import DEFAULT_LIMITS, Limits, scan_archive, unsafe_name

BUNDLE_SCHEMA = "preaudit/evidence-bundle/v1"
ROOT = "preaudit-evidence"
MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"
PUBLIC_KEY = "signing-key.pub"
METADATA = "metadata.json"
_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")
_VERSIONED_PACKAGES = (
    "cryptography",
    "Jinja2",
    "jsonschema",
    "PyYAML",
    "ansible-core",
    "sslyze",
    "bandit",
    "pip-audit",
)
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BundleInfo:
    path: Path
    files: int  # files listed in the manifest
    key_fingerprint: str
    manifest_sha256: str


@dataclass(slots=True)
class Verification:
    ok: bool
    problems: list[str]  # each a reason the bundle cannot be trusted, naming the file
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0
    key_source: str = ""  # "pinned" (given by the verifier) or "embedded" (the bundle's own key)
    key_fingerprint: str | None = None
    metadata: dict[str, Any] | None = None


# --- writing -----------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _raw_files(raw_dir: Path) -> dict[str, Path]:
    """Regular files under ``raw_dir`` by their path in the bundle; links and odd files refused."""
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: raw scanner output directory does not exist")
    found: dict[str, Path] = {}
    for path in sorted(raw_dir.rglob("*")):
        relative = path.relative_to(raw_dir).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            # Following it could put any file of this machine into evidence handed to an auditor.
            raise InputError(f"{path}: raw outputs must not contain symbolic links; copy the file itself")
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: raw outputs may only hold regular files")
        name = f"raw/{relative}"
        why = unsafe_name(name)
        if why is not None:
            raise InputError(f"{path}: cannot go into the bundle: {why}")
        found[name] = path
    return found


def tool_versions(report: Report) -> dict[str, str]:
    versions = {"preaudit": report.tool_version, "python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    # What the scan itself recorded (scanner tool versions) wins: it is what produced the findings.
    versions.update({f"scan:{k}": v for k, v in report.document.components.items()})
    return dict(sorted(versions.items()))


def bundle_metadata(
    report: Report, key_fingerprint: str, created_at: datetime, contents: Mapping[str, list[str]]
) -> dict[str, Any]:
    scan = report.document.scan
    return {
        "schema": BUNDLE_SCHEMA,
        "created_at": format_timestamp(created_at),
        "tool_versions": tool_versions(report),
        "catalog": dict(report.document.catalog),
        "rendering_catalog": dict(report.rendering_catalog),
        "scan": {
            "id": scan.id,
            "started_at": format_timestamp(scan.started_at),
            "finished_at": format_timestamp(scan.finished_at) if scan.finished_at else None,
            "complete": scan.complete,
            "scanners": sorted(scan.scanners),
        },
        "hosts": report.hosts(),
        "report": {
            "generated_at": format_timestamp(report.generated_at),
            "waivers_judged_on": report.today.isoformat(),
            "overall_score": report.readiness.overall.value,
            "scores": {fr.key: fr.score.value for fr in report.readiness.frameworks},
            "findings": len(report.findings),
        },
        "signing_key": {"algorithm": "Ed25519", "fingerprint": key_fingerprint},
        "contents": {k: sorted(v) for k, v in contents.items()},
    }


def manifest_text(digests: Mapping[str, str]) -> bytes:
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode("utf-8")


def _add(
    archive: tarfile.TarFile, name: str, mtime: float, data: bytes | None = None, path: Path | None = None
) -> None:
    info = tarfile.TarInfo(f"{ROOT}/{name}")
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, mtime, 0, 0, "", ""
    if data is not None:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        return
    assert path is not None
    info.size = path.stat().st_size
    with path.open("rb") as handle:
        archive.addfile(info, handle)


def write_bundle(
    out: Path,
    *,
    report: Report,
    exports: Sequence[Path],
    signing_key: Ed25519PrivateKey,
    inputs: Mapping[str, Path] | None = None,
    raw_dir: Path | None = None,
    created_at: datetime | None = None,
) -> BundleInfo:
    """Write the signed bundle to ``out`` atomically; ``inputs`` maps a name (findings.json,
    baseline.json, waivers.yml) to the file the report was made from."""
    files: dict[str, Path] = {}
    for path in exports:
        files[f"exports/{path.name}"] = path
    for name, path in (inputs or {}).items():
        if not path.is_file():
            raise InputError(f"{path}: input file for the bundle does not exist")
        files[f"input/{name}"] = path
    if raw_dir is not None:
        files.update(_raw_files(raw_dir))

    created_at = created_at or utcnow()
    public_key = signing_key.public_key()
    key_fingerprint = fingerprint(public_key)
    contents: dict[str, list[str]] = {"exports": [], "input": [], "raw": []}
    for name in files:
        contents[name.split("/", 1)[0]].append(name)
    generated = {
        METADATA: (
            json.dumps(bundle_metadata(report, key_fingerprint, created_at, contents), indent=2) + "\n"
        ).encode(),
        PUBLIC_KEY: public_pem(public_key),
    }
    digests = {name: _sha256_file(path) for name, path in files.items()}
    digests.update({name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})
    manifest = manifest_text(digests)
    signature = base64.b64encode(signing_key.sign(manifest)) + b"\n"

    mtime = created_at.timestamp()
    with atomic_writer(out) as handle, tarfile.open(fileobj=handle, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, mtime, data=manifest)
        _add(tar, SIGNATURE, mtime, data=signature)
        for name, data in sorted(generated.items()):
            _add(tar, name, mtime, data=data)
        for name in sorted(files):
            _add(tar, name, mtime, path=files[name])
    return BundleInfo(out, len(digests), key_fingerprint, hashlib.sha256(manifest).hexdigest())


# --- verifying ---------------------------------------------------------------------------------


def _parse_manifest(data: bytes, problems: list[str]) -> dict[str, str]:
    entries: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{MANIFEST} is not UTF-8 text")
        return entries
    for number, line in enumerate(text.splitlines(), 1):
        match = _MANIFEST_LINE.match(line)
        if match is None:
            problems.append(f"{MANIFEST} line {number} is malformed")
            continue
        digest, name = match.groups()
        why = unsafe_name(name)
        if why is not None or name in (MANIFEST, SIGNATURE):
            problems.append(f"{MANIFEST} line {number} names an unsafe or reserved path")
            continue
        if name in entries:
            problems.append(f"{MANIFEST} lists {name} twice")
        entries[name] = digest
    return entries


def _choose_key(
    pinned: Ed25519PublicKey | None, embedded: bytes | None, result: Verification
) -> Ed25519PublicKey | None:
    embedded_key = None
    if embedded is not None:
        try:
            embedded_key = parse_public_key(embedded, PUBLIC_KEY)
        except InputError as exc:
            result.problems.append(str(exc))
    if pinned is not None:
        result.key_source = "pinned"
        if embedded_key is not None and fingerprint(embedded_key) != fingerprint(pinned):
            result.problems.append(
                f"{PUBLIC_KEY} in the bundle ({fingerprint(embedded_key)}) "
                f"is not the pinned key ({fingerprint(pinned)})"
            )
        return pinned
    result.key_source = "embedded"
    result.warnings.append(
        "verified with the public key inside the bundle: this proves the files are unchanged since "
        "signing, not who signed them; pass the key you obtained separately with --public-key"
    )
    if embedded_key is None and embedded is None:
        result.problems.append(f"{PUBLIC_KEY} is missing and no --public-key was given")
    return embedded_key


def _check_signature(key: Ed25519PublicKey, manifest: bytes, signature_file: bytes, result: Verification) -> None:
    try:
        signature = base64.b64decode(signature_file.strip(), validate=True)
    except (binascii.Error, ValueError):
        result.problems.append(f"bad signature: {SIGNATURE} is not base64")
        return
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        result.problems.append(
            f"bad signature: {MANIFEST} was changed after signing or not signed by key {fingerprint(key)}"
        )


def verify_bundle(
    path: Path, public_key: Ed25519PublicKey | None = None, *, limits: Limits = DEFAULT_LIMITS
) -> Verification:
    """Check the signature of the manifest and every file against it, without extracting anything."""
    if not path.is_file():
        raise InputError(f"{path}: no such bundle")
    scan = scan_archive(path, ROOT, frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY, METADATA}), limits)
    result = Verification(ok=False, problems=list(scan.problems))
    manifest = scan.kept.get(MANIFEST)
    signature = scan.kept.get(SIGNATURE)
    if manifest is None:
        result.problems.append(f"removed: {MANIFEST} (nothing can be verified without it)")
    if signature is None:
        result.problems.append(f"removed: {SIGNATURE} (the bundle is unsigned)")
    key = _choose_key(public_key, scan.kept.get(PUBLIC_KEY), result)
    result.key_fingerprint = fingerprint(key) if key else None
    if key is not None and manifest is not None and signature is not None:
        _check_signature(key, manifest, signature, result)

    listed = _parse_manifest(manifest, result.problems) if manifest is not None else {}
    present = {name: digest for name, digest in scan.digests.items() if name not in (MANIFEST, SIGNATURE)}
    if scan.complete:
        for name in sorted(listed.keys() - present.keys()):
            result.problems.append(f"removed: {name}")
    for name in sorted(present.keys() - listed.keys()):
        result.problems.append(f"added: {name}")
    for name in sorted(listed.keys() & present.keys()):
        if listed[name] != present[name]:
            result.problems.append(f"modified: {name}")
    result.files_checked = len(listed.keys() & present.keys())
    if METADATA in scan.kept:
        try:
            loaded = json.loads(scan.kept[METADATA])
            result.metadata = loaded if isinstance(loaded, dict) else None
        except ValueError:
            result.metadata = None
    result.ok = not result.problems
    return result
