"""The dependency scanner: pip-audit's auditor over requirements, pyproject and virtualenvs, offline.

pip-audit's own vulnerability services need the network, so the auditor is given a
:class:`OfflineOsvService` backed by the imported OSV database (:mod:`scanners.vulndb`).

Offline there is no index to resolve a range against, so only exact pins (``==``) are audited.
A requirement that is not pinned, a URL requirement and an invalid line each become an error
finding of DEP-001 naming the file and line ("not audited, and why"); the rest of the file is
still audited. Without a usable database the scanner emits one loud error finding and audits
nothing: a missing database must never read as "0 vulnerabilities".
"""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip_audit._audit import Auditor
from pip_audit._dependency_source import DependencySource, PipSource
from pip_audit._service.interface import (
    Dependency,
    ResolvedDependency,
    VulnerabilityID,
    VulnerabilityResult,
    VulnerabilityService,
)
from pip_requirements_parser import RequirementsFile  # type: ignore[import-untyped]

from scanners.catalog import Control
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Severity, Status
from scanners.scanning import ScanContext, ScanRoot, error_finding
from scanners.source_files import FileProblem, decode_text, is_binary, read_bytes, walk
from scanners.vulndb import Advisory, VulnDb, VulnDbError, open_vulndb

SCANNER = "dependencies"
CONTROL_ID = "DEP-001"
_OSV_SEVERITY = {"CRITICAL": Severity.CRITICAL, "HIGH": Severity.HIGH, "MODERATE": Severity.MEDIUM, "LOW": Severity.LOW}


@dataclass(slots=True)
class DependencyScanStats:
    files: int = 0
    packages: int = 0
    vulnerable_packages: int = 0
    findings: int = 0
    not_audited: int = 0
    errors: int = 0
    # The snapshot the audit used (source, kind, commit, date, advisories, ...); None when no
    # database could be opened. The pipeline records it as the findings document's scan.vulndb.
    vulndb: dict[str, Any] | None = None
    seconds: float = 0.0


class OfflineOsvService(VulnerabilityService):  # type: ignore[misc]
    """A pip-audit vulnerability service answering from the local OSV database."""

    def __init__(self, db: VulnDb) -> None:
        self.db = db
        # pip-audit re-labels a result with its preferred id (PYSEC, then CVE); keep every id.
        self.advisories: dict[str, Advisory] = {}

    def query(self, spec: Dependency) -> tuple[Dependency, list[VulnerabilityResult]]:
        if not isinstance(spec, ResolvedDependency):
            return spec, []
        results = []
        for advisory in self.db.affecting(spec.name, spec.version):
            for ident in (advisory.id, *advisory.aliases):
                self.advisories.setdefault(ident, advisory)
            results.append(
                VulnerabilityResult.create(
                    ids=[VulnerabilityID(advisory.id), *(VulnerabilityID(a) for a in advisory.aliases)],
                    description=advisory.summary,
                    fix_versions=[Version(v) for v in advisory.fixed],
                    published=_published(advisory.published),
                )
            )
        return spec, results


def _published(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class PinnedRequirements(DependencySource):  # type: ignore[misc]
    """Exact pins already read from a file: what pip-audit's ``--no-deps --disable-pip`` audits."""

    def __init__(self, dependencies: Sequence[ResolvedDependency]) -> None:
        self.dependencies = list(dependencies)

    def collect(self) -> Iterator[Dependency]:
        yield from self.dependencies

    def fix(self, fix_version: Any) -> None:
        raise NotImplementedError("preaudit reports fixed versions; it does not edit requirement files")


@dataclass(slots=True)
class Pin:
    name: str
    version: Version
    file: Path
    line: int | None


@dataclass(slots=True)
class DependencyFile:
    """One place dependencies are declared, and what could not be audited in it."""

    root: ScanRoot
    path: Path
    kind: str  # requirements, pyproject or virtualenv
    pins: list[Pin] = field(default_factory=list)
    problems: list[NotAudited] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NotAudited:
    """A declared requirement that could not be audited, and what to do about it."""

    file: Path
    line: int | None
    message: str
    # A content key (the requirement, or a hash of the line) so fingerprints survive edits above it.
    key: str
    remediation: str


# --- reading declarations -------------------------------------------------------------------


def _exact_version(requirement: Any) -> Version | None:
    specs = list(requirement.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    try:
        return Version(specs[0].version)
    except InvalidVersion:
        return None


def _text_problem(path: Path) -> str | None:
    data = read_bytes(path)
    if isinstance(data, str):
        return data
    if is_binary(data) or decode_text(data) is None:
        return "not a UTF-8 text file; not read"
    return None


def _read_requirements(dep_file: DependencyFile, path: Path, seen: set[Path]) -> None:
    seen.add(path.resolve())
    try:
        parsed = RequirementsFile.from_file(str(path), include_nested=False)
    except Exception as exc:
        dep_file.problems.append(
            NotAudited(
                path, None, f"cannot be parsed as a requirements file ({type(exc).__name__})", "parse", _FIX_FILE
            )
        )
        return
    for invalid in parsed.invalid_lines:
        reason = str(invalid.error_message).splitlines()[0] if invalid.error_message else "invalid requirement"
        key = "invalid:" + hashlib.sha256(str(invalid.line).encode()).hexdigest()[:16]
        dep_file.problems.append(
            NotAudited(path, invalid.line_number, f"invalid requirement line, not audited: {reason}", key, _FIX_LINE)
        )
    for option in parsed.options:
        line = option.requirement_line.line_number
        for nested in option.options.get("requirements") or []:
            nested_path = (path.parent / nested) if not Path(nested).is_absolute() else Path(nested)
            if nested_path.resolve() in seen:
                continue
            problem = _text_problem(nested_path)
            if problem:
                dep_file.problems.append(
                    NotAudited(path, line, f"included file {nested} {problem}", f"include:{nested}", _FIX_FILE)
                )
            else:
                _read_requirements(dep_file, nested_path, seen)
    for req in parsed.requirements:
        line = req.requirement_line.line_number
        if req.req is None or req.is_url or req.is_editable:
            label = req.name or "a URL requirement"
            message = f"{label} is a URL or editable requirement with no version; not audited"
            dep_file.problems.append(NotAudited(path, line, message, f"url:{label}", _FIX_PIN))
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = _exact_version(req.req)
        if version is None:
            dep_file.problems.append(
                NotAudited(path, line, _unpinned_message(str(req.req)), f"unpinned:{req.req}", _FIX_PIN)
            )
        else:
            dep_file.pins.append(Pin(req.name, version, path, line))


_FIX_PIN = (
    "Pin the requirement to one version (name==version, e.g. with pip-compile or pip freeze) so that it can be "
    "audited offline, or audit this file where a package index is reachable."
)
_FIX_LINE = "Correct the requirement line (PEP 508: name, optional extras, version specifier, markers)."
_FIX_FILE = "Make the file readable and well-formed, then scan again."


def _unpinned_message(requirement: str) -> str:
    return (
        f"{requirement} is not pinned to one version (==); offline there is no index to resolve it, so it "
        "was not audited. Pin it (pip-compile, pip freeze) to have it audited"
    )


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _read_pyproject(dep_file: DependencyFile) -> None:
    path = dep_file.path
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        dep_file.problems.append(NotAudited(path, None, f"not valid TOML ({exc}); not audited", "toml", _FIX_FILE))
        return
    project = data.get("project") if isinstance(data, dict) else None
    if not isinstance(project, dict):
        return
    declared: list[Any] = list(project.get("dependencies") or [])
    for extra in (project.get("optional-dependencies") or {}).values():
        declared += list(extra or [])
    for entry in declared:
        line = _line_of(text, str(entry))
        try:
            req = Requirement(str(entry))
        except InvalidRequirement as exc:
            message = f"invalid requirement, not audited: {str(exc).splitlines()[0]}"
            key = "invalid:" + hashlib.sha256(str(entry).encode()).hexdigest()[:16]
            dep_file.problems.append(NotAudited(path, line, message, key, _FIX_LINE))
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = _exact_version(req)
        if req.url or version is None:
            dep_file.problems.append(NotAudited(path, line, _unpinned_message(str(req)), f"unpinned:{req}", _FIX_PIN))
        else:
            dep_file.pins.append(Pin(req.name, version, path, line))


def _site_packages(venv: Path) -> list[Path]:
    return sorted(p for p in venv.glob("lib*/python3*/site-packages") if p.is_dir())


def _read_virtualenv(dep_file: DependencyFile) -> None:
    # pip-audit's own environment source: `pip list --path` over the environment's site-packages.
    paths = _site_packages(dep_file.path)
    if not paths:
        message = "virtualenv has no lib/python3*/site-packages; not audited"
        dep_file.problems.append(NotAudited(dep_file.path, None, message, "venv", _FIX_FILE))
        return
    try:
        collected = list(PipSource(paths=paths).collect())
    except Exception as exc:
        message = f"cannot list the installed packages ({exc}); not audited"
        dep_file.problems.append(NotAudited(dep_file.path, None, message, "venv", _FIX_FILE))
        return
    for dep in collected:
        if isinstance(dep, ResolvedDependency):
            dep_file.pins.append(Pin(dep.name, dep.version, dep_file.path, None))
        else:
            message = f"{dep.name}: {dep.skip_reason}"
            dep_file.problems.append(NotAudited(dep_file.path, None, message, f"skipped:{dep.name}", _FIX_PIN))


def _is_declaration(path: Path) -> bool:
    name = path.name
    return name == "pyproject.toml" or (name.startswith("requirements") and name.endswith(".txt"))


def discover(root: ScanRoot) -> Iterator[DependencyFile | FileProblem]:
    """The dependency declarations under ``root``: requirement files, pyproject.toml, virtualenvs."""
    path = root.path
    if path.is_dir():
        venvs = [path] if (path / "pyvenv.cfg").is_file() else sorted(p.parent for p in path.glob("*/pyvenv.cfg"))
        for venv in venvs:
            yield DependencyFile(root, venv, "virtualenv")
        if path in venvs:
            return
        for item in walk(root, _is_declaration):
            if isinstance(item, FileProblem):
                yield item
            else:
                kind = "pyproject" if item.path.name == "pyproject.toml" else "requirements"
                yield DependencyFile(root, item.path, kind)
        return
    for item in walk(root, lambda _p: True):
        if isinstance(item, FileProblem):
            yield item
        else:
            kind = "pyproject" if item.path.suffix == ".toml" else "requirements"
            yield DependencyFile(root, item.path, kind)


def read_declarations(dep_file: DependencyFile) -> str | None:
    """Fill ``pins`` and ``problems``; a one-line reason when the file cannot be read at all."""
    if dep_file.kind == "virtualenv":
        _read_virtualenv(dep_file)
        return None
    problem = _text_problem(dep_file.path)
    if problem:
        return problem
    try:
        if dep_file.kind == "pyproject":
            _read_pyproject(dep_file)
        else:
            _read_requirements(dep_file, dep_file.path, set())
    except (OSError, UnicodeDecodeError) as exc:
        # Changed or removed between the check above and the parse.
        return f"could not be read ({type(exc).__name__}); not audited"
    return None


# --- findings -------------------------------------------------------------------------------


def _display(root: ScanRoot, path: Path) -> str:
    """How findings name ``path``; a file included (-r) from outside a file root is named beside it."""
    try:
        return root.resource_path(path)
    except ValueError:
        base = PurePosixPath(root.display if root.display is not None else str(root.path))
        anchor = root.path.parent if root.path.is_file() else root.path
        try:
            return str(base.parent / Path(os.path.relpath(path, anchor)).as_posix())
        except ValueError:
            return str(path)


def _remediation(name: str, version: Version, fixed: Sequence[Version]) -> str:
    if not fixed:
        return (
            f"No fixed version of {name} is published for this advisory: remove or replace {name}, or waive "
            "the finding with a justification and compensating controls."
        )
    others = f" (fixed in {', '.join(str(v) for v in fixed)})" if len(fixed) > 1 else ""
    return f"Upgrade {name} from {version} to {fixed[0]} or later{others}, test, and pin the new version."


def _vulnerability_finding(
    control: Control,
    dep_file: DependencyFile,
    pin: Pin,
    vuln: VulnerabilityResult,
    advisory: Advisory | None,
    snapshot: str,
) -> Finding:
    cves = sorted({a for a in (vuln.id, *vuln.aliases) if a.startswith("CVE-")})
    fixed = sorted(vuln.fix_versions)
    raw_severity = advisory.severity.upper() if advisory and advisory.severity else ""
    severity = _OSV_SEVERITY.get(raw_severity, control.severity)
    also = f" ({', '.join(cves)})" if cves else ""
    return control.finding(
        Status.FAIL,
        Resource(
            kind=ResourceKind.PACKAGE,
            host=dep_file.root.host,
            path=_display(dep_file.root, pin.file),
            line=pin.line,
            package=pin.name,
            version=str(pin.version),
        ),
        SCANNER,
        evidence=Evidence(
            observed=f"{pin.name}=={pin.version}",
            expected=f"{pin.name}>={fixed[0]}" if fixed else f"no version of {pin.name} affected by {vuln.id}",
            details={
                "advisory": vuln.id,
                "aliases": sorted(vuln.aliases),
                "fixed_versions": [str(v) for v in fixed],
                "summary": vuln.description,
                "published": advisory.published if advisory else None,
                "vulndb": snapshot,
            },
        ),
        message=f"{pin.name} {pin.version} is affected by {vuln.id}{also}: {vuln.description}",
        rule=vuln.id,
        title=f"{control.title}: {pin.name} {pin.version} ({vuln.id})",
        severity=severity,
        discriminator=vuln.id,
        extra_references={"cve": cves} if cves else None,
        remediation=_remediation(pin.name, pin.version, fixed),
    )


def _not_audited_finding(control: Control, root: ScanRoot, item: NotAudited) -> Finding:
    where = _display(root, item.file)
    label = where + (f":{item.line}" if item.line else "")
    return control.finding(
        Status.ERROR,
        Resource(kind=ResourceKind.FILE, host=root.host, path=where, line=item.line),
        SCANNER,
        evidence=Evidence(
            observed=item.message, expected="every requirement audited against the vulnerability database"
        ),
        message=f"{label}: {item.message}",
        title=f"{control.title}: not audited",
        discriminator=item.key,
        remediation=item.remediation,
    )


def _clean_finding(control: Control, dep_file: DependencyFile, count: int, snapshot: str) -> Finding:
    return control.finding(
        Status.PASS,
        Resource(kind=ResourceKind.FILE, host=dep_file.root.host, path=_display(dep_file.root, dep_file.path)),
        SCANNER,
        evidence=Evidence(
            observed=f"{count} pinned packages, no advisory", expected="no advisory", details={"vulndb": snapshot}
        ),
        message=f"{count} pinned packages audited against {snapshot}: no published advisory",
    )


def scan_dependencies(ctx: ScanContext, roots: Sequence[ScanRoot], *, vulndb: Path | None) -> DependencyScanStats:
    """Audit every pinned dependency under ``roots`` against the offline OSV database.

    ``vulndb`` is the database location (directory or file); None means the default
    (``$PREAUDIT_VULNDB`` or ``$XDG_DATA_HOME/preaudit/vulndb``).
    """
    started = time.monotonic()
    stats = DependencyScanStats()
    control = ctx.catalog.get(CONTROL_ID)
    emitted: set[str] = set()

    def emit(finding: Finding) -> None:
        # A file included with -r and also found on its own is read twice; report it once.
        if finding.fingerprint not in emitted:
            emitted.add(finding.fingerprint)
            stats.findings += finding.status is Status.FAIL
            ctx.emit(finding)

    def error(root: ScanRoot | None, path: Path | None, line: int | None, message: str, control_id: str) -> None:
        stats.errors += 1
        if root is None or path is None:
            resource = Resource(kind=ResourceKind.SCANNER)
        else:
            resource = Resource(kind=ResourceKind.FILE, host=root.host, path=_display(root, path), line=line)
        emit(error_finding(ctx.catalog, SCANNER, resource, message, control_id=control_id))

    files: list[DependencyFile] = []
    for root in roots:
        for item in discover(root):
            if isinstance(item, FileProblem):
                error(item.root, item.path, None, f"{item.display}: {item.message}", "SCAN-001")
            else:
                files.append(item)
    stats.files = len(files)
    try:
        db = open_vulndb(vulndb)
    except VulnDbError as exc:
        error(None, None, None, f"dependencies not audited ({len(files)} declaration files found): {exc}", CONTROL_ID)
        stats.seconds = time.monotonic() - started
        return stats
    with db:
        stats.vulndb = db.info.to_dict()
        snapshot = db.info.label()
        ctx.progress(f"dependencies: auditing {len(files)} files against {snapshot}")
        service = OfflineOsvService(db)
        auditor = Auditor(service)
        for dep_file in files:
            if ctx.cancelled.is_set():
                break
            where = _display(dep_file.root, dep_file.path)
            problem = read_declarations(dep_file)
            if problem:
                error(dep_file.root, dep_file.path, None, f"{where}: {problem}", "SCAN-001")
                continue
            for problem_item in dep_file.problems:
                stats.not_audited += 1
                stats.errors += 1
                emit(_not_audited_finding(control, dep_file.root, problem_item))
            by_key: dict[tuple[str, Version], list[Pin]] = {}
            for pin in dep_file.pins:
                by_key.setdefault((canonicalize_name(pin.name), pin.version), []).append(pin)
            source = PinnedRequirements(
                [ResolvedDependency(name=p[0].name, version=p[0].version) for p in by_key.values()]
            )
            vulnerable = 0
            try:
                audited = list(auditor.audit(source))
            except VulnDbError as exc:
                error(None, None, None, f"dependencies not audited: {exc}", CONTROL_ID)
                break
            for dep, vulns in audited:
                stats.packages += 1
                if not vulns:
                    continue
                vulnerable += 1
                pins = by_key[(dep.canonical_name, dep.version)]
                for pin in pins:
                    for vuln in vulns:
                        advisory = service.advisories.get(vuln.id)
                        emit(_vulnerability_finding(control, dep_file, pin, vuln, advisory, snapshot))
            stats.vulnerable_packages += vulnerable
            if by_key and not vulnerable:
                emit(_clean_finding(control, dep_file, len(by_key), snapshot))
    stats.seconds = time.monotonic() - started
    return stats
