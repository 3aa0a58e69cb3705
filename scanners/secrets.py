"""The secrets scanner: detect-secrets' plugins and filters over code trees and configuration paths.

Every file is read once, checked (binary, UTF-8, size), and handed with its name to
detect-secrets' line scanner in a worker process; results are cached by content and path.
detect-secrets' own filters apply, including inline ``pragma: allowlist secret`` comments;
secrets recorded in a detect-secrets baseline are not reported.

A finding never contains the secret or any part of it: the secret type, file, line and an
HMAC of the secret under a per-installation salt (see :mod:`scanners.secret_salt`). Worker
errors are reported by exception type only, since a message could quote the scanned line.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect_secrets.__version__ import VERSION as DETECT_SECRETS_VERSION
from detect_secrets.core import scan as ds_scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.settings import get_settings
from detect_secrets.transformers import get_transformed_file

from scanners import file_pool
from scanners.catalog import Control
from scanners.content_cache import ContentCache, default_cache_root
from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.scanning import ScanContext, ScanRoot, error_finding
from scanners.secret_lines import LineScanner
from scanners.secret_salt import load_salt, salt_id, salted_hash
from scanners.source_files import Candidate, FileProblem, decode_text, is_binary, occurrence_key, read_bytes, walk

SCANNER = "secrets"
CONTROL_ID = "SEC-101"
_RESULT_FORMAT = "1"
DATABASE_URL_TYPE = "Database URL with password"
# A public IP address is not a secret, and configuration paths are full of them.
_DISABLED_PLUGINS = frozenset({"IPPublicDetector"})
# detect-secrets reports a password in any URL as basic-auth credentials; when the URL is a
# database's, say so, since that is what an operator has to rotate.
_DATABASE_URL = re.compile(
    r"\b(postgres(ql)?|mysql|mariadb|mongodb(\+srv)?|redis|rediss|mssql|sqlserver|oracle|amqps?|cockroachdb)"
    r"(\+[a-z0-9]+)?://[^\s/:@]+:[^\s@]+@",
    re.IGNORECASE,
)
# Heuristic detections are weaker evidence than a known token format.
_HEURISTIC_TYPES = frozenset({"Secret Keyword", "Base64 High Entropy String", "Hex High Entropy String"})


@dataclass(slots=True)
class SecretsScanStats:
    files: int = 0
    analysed: int = 0
    cached: int = 0
    skipped: int = 0
    errors: int = 0
    findings: int = 0
    baselined: int = 0
    seconds: float = 0.0
    detect_secrets_version: str = DETECT_SECRETS_VERSION


def default_secrets_cache_dir() -> Path:
    return default_cache_root() / "secrets"


@functools.cache
def plugin_names() -> list[str]:
    """detect-secrets' plugins, all of them but those that do not find secrets."""
    classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return sorted(c.__name__ for c in classes if c.__name__ not in _DISABLED_PLUGINS)


def _cache_key(path: Path, data: bytes, salt: bytes) -> str:
    # The path is part of the key: detect-secrets' filters and parsers look at the file name.
    digest = hashlib.sha256()
    digest.update(f"detect-secrets {DETECT_SECRETS_VERSION}\0{_RESULT_FORMAT}\0{salt_id(salt)}\0".encode())
    digest.update(",".join(plugin_names()).encode() + b"\0")
    digest.update(str(path).encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


# --- worker side ----------------------------------------------------------------------------

_SALT: bytes = b""
_SCANNER: LineScanner | None = None


def _init_worker(salt: bytes) -> None:
    global _SALT, _SCANNER
    _SALT = salt
    # detect-secrets logs skipped secrets verbatim at INFO; keep its logger quiet, always.
    logging.getLogger("detect-secrets").setLevel(logging.CRITICAL)
    settings = get_settings()
    if sorted(settings.plugins) != plugin_names():
        settings.configure_plugins([{"name": name} for name in plugin_names()])
    # This filter drops a file that no longer exists; the scanner has its bytes already, and a
    # file that vanished after being read must still be scanned, not silently skipped.
    settings.disable_filters("detect_secrets.filters.common.is_invalid_file")
    _SCANNER = LineScanner()


def _analyse_batch(batch: list[file_pool.Job]) -> list[dict[str, Any]]:
    return [analyse_file(name, data) for _key, name, data in batch]


class _NamedText(io.StringIO):
    """What detect-secrets' transformers expect of a file: text with a name."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name


def _line_sets(name: str, text: str) -> Iterator[list[str]]:
    handle = _NamedText(text, name)
    lines = get_transformed_file(handle)  # type: ignore[arg-type]
    yield lines if lines else text.splitlines()
    # detect-secrets tries the eager (key = value) parsers only when the first pass found
    # nothing; that hides the API key of a .env file whose first hit was its database URL, so
    # both passes always run and their results are merged.
    handle.seek(0)
    eager = get_transformed_file(handle, use_eager_transformers=True)  # type: ignore[arg-type]
    if eager:
        yield eager


def analyse_file(name: str, data: bytes) -> dict[str, Any]:
    """Secrets in one file's bytes: type, line and salted hash of each, never the value."""
    try:
        if ds_scan._is_filtered_out(required_filter_parameters=["filename"], filename=name):
            return {"skipped": True}
        if is_binary(data):
            return {"error": "binary content; not scanned for secrets"}
        text = decode_text(data)
        if text is None:
            return {"error": "not valid UTF-8 text; not scanned for secrets"}
        original = text.splitlines()
        scanner = _SCANNER or LineScanner()
        found: dict[tuple[str, int, str], None] = {}
        for lines in _line_sets(name, text):
            for secret in scanner.scan(lines, name):
                kind = secret.type
                line_no = int(secret.line_number)
                source_line = original[line_no - 1] if 0 < line_no <= len(original) else ""
                if kind == "Basic Auth Credentials" and _DATABASE_URL.search(source_line):
                    kind = DATABASE_URL_TYPE
                found[(kind, line_no, salted_hash(_SALT, secret.secret_hash))] = None
        return {"secrets": [{"type": t, "line": ln, "hash": h} for t, ln, h in sorted(found, key=lambda k: k[1])]}
    except Exception as exc:
        # The type only: a message could quote the line, and with it the secret.
        return {"error": f"detect-secrets failed on this file ({type(exc).__name__}); not scanned for secrets"}


# --- baseline -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    """Known secrets from a detect-secrets baseline: (file, type, salted hash)."""

    entries: frozenset[tuple[str, str, str]]

    def knows(self, files: tuple[str, ...], kind: str, hashed: str) -> bool:
        kinds = {kind, "Basic Auth Credentials"} if kind == DATABASE_URL_TYPE else {kind}
        return any((f, k, hashed) in self.entries for f in files for k in kinds)


def _norm_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def load_baseline(path: Path, salt: bytes) -> Baseline:
    """Read a detect-secrets baseline (``detect-secrets scan > .secrets.baseline``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"secrets baseline {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"secrets baseline {path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"secrets baseline {path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise InputError(f"secrets baseline {path}: not a detect-secrets baseline (no 'results' mapping)")
    entries: set[tuple[str, str, str]] = set()
    for filename, items in results.items():
        if not isinstance(items, list):
            raise InputError(f"secrets baseline {path}: results for {filename!r} must be a list")
        for item in items:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("type"), str)
                and isinstance(item.get("hashed_secret"), str)
            ):
                raise InputError(f"secrets baseline {path}: an entry for {filename!r} lacks 'type' or 'hashed_secret'")
            entries.add((_norm_name(filename), item["type"], salted_hash(salt, item["hashed_secret"])))
    return Baseline(frozenset(entries))


# --- controller side ------------------------------------------------------------------------


def _severity(kind: str, control: Control) -> Severity:
    if kind == "Private Key":
        return Severity.CRITICAL
    if kind in _HEURISTIC_TYPES:
        return Severity.MEDIUM
    return control.severity


def _secret_finding(control: Control, candidate: Candidate, secret: dict[str, Any], occurrence: int) -> Finding:
    kind = str(secret["type"])
    hashed = str(secret["hash"])
    line = int(secret["line"])
    return control.finding(
        Status.FAIL,
        Resource(kind=ResourceKind.FILE, host=candidate.root.host, path=candidate.display, line=line),
        SCANNER,
        evidence=Evidence(
            observed=f"{kind} on line {line}",
            expected="no secret in the file",
            details={"type": kind, "salted_hash": hashed, "detector": f"detect-secrets {DETECT_SECRETS_VERSION}"},
        ),
        message=f"{kind} in {candidate.display}:{line} (salted SHA-256 {hashed[:16]})",
        rule=kind,
        title=f"{control.title}: {kind}",
        severity=_severity(kind, control),
        discriminator=occurrence_key(f"{kind}:{hashed}", occurrence),
    )


def scan_secrets(
    ctx: ScanContext,
    roots: Sequence[ScanRoot],
    *,
    baseline: Path | None = None,
    workers: int | None = None,
    cache_dir: Path | None = None,
) -> SecretsScanStats:
    """Look for secrets in every text file under ``roots``, emitting each finding as it is known.

    ``baseline`` is a detect-secrets baseline whose secrets are known and not reported.
    """
    started = time.monotonic()
    stats = SecretsScanStats()
    control = ctx.catalog.get(CONTROL_ID)
    salt = load_salt()
    known = load_baseline(baseline, salt) if baseline is not None else Baseline(frozenset())
    cache = ContentCache((cache_dir or default_secrets_cache_dir()) / "results.sqlite3")
    try:

        def problem(root: ScanRoot, path: Path, message: str) -> None:
            stats.errors += 1
            resource = Resource(kind=ResourceKind.FILE, host=root.host, path=root.resource_path(path))
            ctx.emit(error_finding(ctx.catalog, SCANNER, resource, f"{root.resource_path(path)}: {message}"))

        def report(candidate: Candidate, result: dict[str, Any]) -> None:
            if "error" in result:
                problem(candidate.root, candidate.path, str(result["error"]))
                return
            if result.get("skipped"):
                stats.skipped += 1
                return
            names = (_norm_name(candidate.relative), candidate.display)
            seen: dict[str, int] = {}
            for secret in result["secrets"]:
                if known.knows(names, str(secret["type"]), str(secret["hash"])):
                    stats.baselined += 1
                    continue
                stats.findings += 1
                key = f"{secret['type']}:{secret['hash']}"
                seen[key] = seen.get(key, 0) + 1
                ctx.emit(_secret_finding(control, candidate, secret, seen[key]))

        # The baseline holds hashes of secrets; detect-secrets never scans it either.
        baseline_file = os.path.realpath(baseline) if baseline is not None else None
        pending: dict[str, list[Candidate]] = {}
        jobs: list[file_pool.Job] = []
        for root in roots:
            for item in walk(root, lambda path: baseline_file is None or os.path.realpath(path) != baseline_file):
                if ctx.cancelled.is_set():
                    return stats
                if isinstance(item, FileProblem):
                    problem(item.root, item.path, item.message)
                    continue
                stats.files += 1
                data = read_bytes(item.path)
                if isinstance(data, str):
                    problem(item.root, item.path, data)
                    continue
                key = _cache_key(item.path, data, salt)
                if key not in pending:
                    jobs.append((key, str(item.path), data))
                pending.setdefault(key, []).append(item)
        for key, result in cache.get_many(pending).items():
            for candidate in pending.pop(key):
                stats.cached += 1
                report(candidate, result)
        jobs = [job for job in jobs if job[0] in pending]
        ctx.progress(f"secrets: {stats.cached} files unchanged, scanning {len(jobs)}")
        fresh: dict[str, Any] = {}
        for key, result in file_pool.analyse(
            jobs,
            _analyse_batch,
            workers=workers or file_pool.default_workers(),
            initializer=_init_worker,
            initargs=(salt,),
            cancelled=ctx.cancelled,
            crashed=lambda reason: {"error": reason, "transient": True},
        ):
            for candidate in pending.pop(key):
                stats.analysed += 1
                report(candidate, result)
            if not result.get("transient"):
                fresh[key] = result
            if len(fresh) >= 200:
                cache.put_many(fresh)
                fresh = {}
            ctx.progress(f"secrets: {stats.analysed + stats.cached}/{stats.files} files")
        cache.put_many(fresh)
        if cache.problem:
            ctx.progress(f"secrets: {cache.problem}")
    finally:
        cache.close()
        stats.seconds = time.monotonic() - started
    return stats
