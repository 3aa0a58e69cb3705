"""The code scanner: bandit on every Python file of the given trees, on all cores, cached by content.

Each file is analysed by bandit's own manager and test set (the same checks as ``bandit -r``)
in a worker process; the result is cached under the SHA-256 of the file's bytes, bandit's
version and the profile, so a file that did not change is never analysed twice. A finding
names bandit's test id as its rule, maps bandit's severity and confidence to a severity and a
score, and carries bandit's CWE id.

Findings never quote code: bandit's messages for hard-coded passwords contain the password, so
quoted literals are withheld, and the content key is a hash of the offending line.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bandit import __version__ as BANDIT_VERSION
from bandit.core import config as bandit_config
from bandit.core import docs_utils, manager, metrics

from scanners import file_pool
from scanners.catalog import Control
from scanners.content_cache import ContentCache, default_cache_root
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.scanning import ScanContext, ScanRoot, error_finding
from scanners.source_files import Candidate, FileProblem, decode_python, is_binary, occurrence_key, read_bytes, walk

SCANNER = "code"
CONTROL_ID = "CODE-001"
# bandit's default profile: every test plugin and blacklist, as `bandit -r` runs them.
PROFILE = "bandit-default"
# Bumped when the cached result format changes, so old entries are never misread.
_RESULT_FORMAT = "1"
PYTHON_SUFFIXES = frozenset({".py", ".pyw"})

_SEVERITY = {"HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM, "LOW": Severity.LOW}
# Scores stay inside the CVSS band of the severity; confidence moves them within it.
_SCORE = {
    ("HIGH", "HIGH"): 8.9,
    ("HIGH", "MEDIUM"): 8.0,
    ("HIGH", "LOW"): 7.0,
    ("MEDIUM", "HIGH"): 6.9,
    ("MEDIUM", "MEDIUM"): 5.5,
    ("MEDIUM", "LOW"): 4.0,
    ("LOW", "HIGH"): 3.9,
    ("LOW", "MEDIUM"): 3.0,
    ("LOW", "LOW"): 2.0,
}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass(slots=True)
class CodeScanStats:
    files: int = 0
    analysed: int = 0
    cached: int = 0
    errors: int = 0
    findings: int = 0
    seconds: float = 0.0
    bandit_version: str = BANDIT_VERSION


def default_code_cache_dir() -> Path:
    return default_cache_root() / "code"


def _is_python(path: Path) -> bool:
    return path.suffix in PYTHON_SUFFIXES


def cache_key(data: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(f"bandit {BANDIT_VERSION}\0{PROFILE}\0{_RESULT_FORMAT}\0".encode())
    digest.update(data)
    return digest.hexdigest()


# --- worker side: runs in a pool process (or inline for tiny jobs) --------------------------

_MANAGER: Any = None


def _init_worker() -> None:
    global _MANAGER
    if _MANAGER is None:
        # bandit logs a line per unparsable file; the scanner reports those as findings instead.
        logging.getLogger("bandit").setLevel(logging.CRITICAL)
        _MANAGER = manager.BanditManager(bandit_config.BanditConfig(), "file", quiet=True)


def _analyse_batch(batch: list[file_pool.Job]) -> list[dict[str, Any]]:
    return [analyse_source(name, data) for _key, name, data in batch]


def analyse_source(name: str, data: bytes) -> dict[str, Any]:
    """bandit's issues for one file's bytes, as plain data (what the cache stores)."""
    _init_worker()
    if is_binary(data):
        return {"error": "binary content in a Python file; not analysed"}
    text = decode_python(data)
    if text is None:
        return {"error": "not valid UTF-8 (nor the encoding its coding cookie declares); not analysed"}
    bandit = _MANAGER
    bandit.results, bandit.skipped, bandit.scores = [], [], []
    bandit.metrics = metrics.Metrics()
    # bandit's per-file entry point: reads nosec comments, parses, runs every test.
    bandit._parse_file(name, io.BytesIO(data), [name])
    if bandit.skipped:
        reason = bandit.skipped[0][1]
        return {"error": f"bandit could not analyse it ({reason}); not analysed"}
    lines = text.splitlines()
    issues = []
    for issue in bandit.results:
        line = lines[issue.lineno - 1] if 0 < issue.lineno <= len(lines) else ""
        issues.append(
            {
                "test_id": issue.test_id,
                "test_name": issue.test,
                "severity": issue.severity,
                "confidence": issue.confidence,
                "cwe": issue.cwe.id,
                "text": _QUOTED.sub("'(withheld)'", issue.text),
                "line": issue.lineno,
                "column": issue.col_offset,
                "code_key": hashlib.sha256(" ".join(line.split()).encode()).hexdigest()[:16],
            }
        )
    bandit.results = []
    return {"issues": issues}


# --- controller side ------------------------------------------------------------------------


def _issue_finding(control: Control, candidate: Candidate, issue: dict[str, Any], occurrence: int) -> Finding:
    sev_name = str(issue["severity"]).upper()
    conf_name = str(issue["confidence"]).upper()
    severity = _SEVERITY.get(sev_name, Severity.INFO)
    test_id = str(issue["test_id"])
    cwe = int(issue.get("cwe") or 0)
    details: dict[str, Any] = {
        "test_id": test_id,
        "test_name": issue["test_name"],
        "bandit_severity": sev_name,
        "bandit_confidence": conf_name,
        "column": issue["column"],
        "more_info": docs_utils.get_url(test_id),
    }
    return control.finding(
        Status.FAIL,
        Resource(kind=ResourceKind.FILE, host=candidate.root.host, path=candidate.display, line=int(issue["line"])),
        SCANNER,
        evidence=Evidence(observed=f"{test_id}: {issue['text']}", expected="no insecure code pattern", details=details),
        message=f"{test_id} {issue['test_name']}: {issue['text']}",
        rule=test_id,
        title=f"{control.title}: {issue['test_name']} ({test_id})",
        severity=severity,
        score=_SCORE.get((sev_name, conf_name), severity.default_score),
        discriminator=occurrence_key(f"{test_id}:{issue['code_key']}", occurrence),
        extra_references={"cwe": [f"CWE-{cwe}"]} if cwe else None,
    )


def scan_code(
    ctx: ScanContext,
    roots: Sequence[ScanRoot],
    *,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> CodeScanStats:
    """Run bandit over every Python file under ``roots``, emitting each finding as it is known.

    ``cache_dir`` holds the results cache (default ``$XDG_CACHE_HOME/preaudit``); ``workers`` is
    the number of processes (default: every core this process may use).
    """
    started = time.monotonic()
    stats = CodeScanStats()
    control = ctx.catalog.get(CONTROL_ID)
    min_rank = Severity.parse(str(control.check.get("min_severity", "info"))).rank
    cache = ContentCache((cache_dir or default_code_cache_dir()) / "results.sqlite3")
    try:

        def problem(root: ScanRoot, path: Path, message: str) -> None:
            stats.errors += 1
            resource = Resource(kind=ResourceKind.FILE, host=root.host, path=root.resource_path(path))
            ctx.emit(error_finding(ctx.catalog, SCANNER, resource, f"{root.resource_path(path)}: {message}"))

        def report(candidate: Candidate, result: dict[str, Any]) -> None:
            if "error" in result:
                problem(candidate.root, candidate.path, str(result["error"]))
                return
            seen: dict[str, int] = {}
            for issue in result["issues"]:
                severity = _SEVERITY.get(str(issue["severity"]).upper(), Severity.INFO)
                if severity.rank >= min_rank:
                    stats.findings += 1
                    key = f"{issue['test_id']}:{issue['code_key']}"
                    seen[key] = seen.get(key, 0) + 1
                    ctx.emit(_issue_finding(control, candidate, issue, seen[key]))

        # Read and hash every file first: hits are reported at once, misses go to the workers.
        pending: dict[str, list[Candidate]] = {}
        jobs: list[file_pool.Job] = []
        for root in roots:
            for item in walk(root, _is_python):
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
                key = cache_key(data)
                if key not in pending:
                    jobs.append((key, item.path.name, data))
                pending.setdefault(key, []).append(item)
        hits = cache.get_many(pending)
        for key, result in hits.items():
            for candidate in pending.pop(key):
                stats.cached += 1
                report(candidate, result)
        jobs = [job for job in jobs if job[0] in pending]
        ctx.progress(f"code: {stats.cached} files unchanged, analysing {len(jobs)}")
        fresh: dict[str, Any] = {}
        for key, result in file_pool.analyse(
            jobs,
            _analyse_batch,
            workers=workers or file_pool.default_workers(),
            initializer=_init_worker,
            initargs=(),
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
            ctx.progress(f"code: {stats.analysed + stats.cached}/{stats.files} files")
        cache.put_many(fresh)
        if cache.problem:
            ctx.progress(f"code: {cache.problem}")
    finally:
        cache.close()
        stats.seconds = time.monotonic() - started
    return stats
