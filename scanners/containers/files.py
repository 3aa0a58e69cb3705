"""Static scan of container files under the scan roots: each file checked, each finding emitted as it comes.

A file that cannot be read or parsed is an error finding for that file; the scan goes on with
the others. A root that does not exist is bad input and is refused before anything is scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from scanners.containers.compose import check_service
from scanners.containers.compose_model import effective_compose, service_lines
from scanners.containers.daemon import check_daemon_json
from scanners.containers.discovery import discover
from scanners.containers.dockerfile import check_dockerfile
from scanners.containers.dockerfile_model import DockerfileError
from scanners.containers.verdicts import SCANNER, Verdict, emit_verdicts
from scanners.errors import InputError
from scanners.findings import Resource, ResourceKind
from scanners.scanning import ScanContext, ScanRoot, error_finding


def scan_container_files(ctx: ScanContext, roots: Sequence[ScanRoot]) -> None:
    """Check every Dockerfile, Compose project (effective configuration) and daemon.json under ``roots``."""
    missing = [str(r.path) for r in roots if not r.path.exists()]
    if missing:
        raise InputError(f"container scan: no such file or directory: {', '.join(missing)}")
    for root in roots:
        if ctx.cancelled.is_set():
            return
        found = discover(root.path)
        for dockerfile in found.dockerfiles:
            if ctx.cancelled.is_set():
                return
            _scan_dockerfile(ctx, root, dockerfile)
        for files in found.compose_projects:
            if ctx.cancelled.is_set():
                return
            _scan_compose_project(ctx, root, files)
        for config in found.daemon_configs:
            if ctx.cancelled.is_set():
                return
            _scan_daemon_json(ctx, root, config)


def _shown_path(root: ScanRoot, path: Path) -> str:
    """The path a finding shows for ``path``: under the root, or beside a root that is a single file
    (a Compose file given as the root brings its base or override file from the same directory)."""
    if path == root.path or root.path in path.parents:
        return root.resource_path(path)
    base = root.display if root.display is not None else str(root.path)
    return str(PurePosixPath(base).parent / path.name)


def _file_resource(root: ScanRoot, path: Path) -> Resource:
    return Resource(kind=ResourceKind.FILE, host=root.host, path=_shown_path(root, path))


def _read_text(ctx: ScanContext, root: ScanRoot, path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except OSError as exc:
        problem = f"cannot read ({exc.strerror or type(exc).__name__})"
    resource = _file_resource(root, path)
    ctx.emit(error_finding(ctx.catalog, SCANNER, resource, f"{resource.path}: {problem}"))
    return None


def _scan_dockerfile(ctx: ScanContext, root: ScanRoot, path: Path) -> None:
    ctx.progress(f"containers: {_shown_path(root, path)}")
    text = _read_text(ctx, root, path)
    if text is None:
        return
    resource = _file_resource(root, path)
    try:
        verdicts = check_dockerfile(text)
    except DockerfileError as exc:
        ctx.emit(error_finding(ctx.catalog, SCANNER, resource, f"{resource.path}: {exc}"))
        return
    emit_verdicts(ctx, verdicts, resource)


def _shown(message: str, root: ScanRoot, files: Sequence[Path]) -> str:
    """``message`` with local copies' paths replaced by the paths the findings show."""
    for path in files:
        message = message.replace(str(path), _shown_path(root, path))
    return message


def _scan_compose_project(ctx: ScanContext, root: ScanRoot, files: list[Path]) -> None:
    base = files[0]
    resource = _file_resource(root, base)
    ctx.progress(f"containers: {resource.path}")
    try:
        model = effective_compose(files)
    except InputError as exc:
        ctx.emit(error_finding(ctx.catalog, SCANNER, resource, _shown(str(exc), root, files)))
        return
    shown_files = [_shown_path(root, f) for f in files]
    lines = service_lines(base)
    for name, service in sorted((model.get("services") or {}).items()):
        verdicts: list[Verdict] = check_service(service)
        emit_verdicts(
            ctx,
            verdicts,
            Resource(kind=ResourceKind.FILE, host=root.host, path=resource.path, line=lines.get(name)),
            subject=name,
            details={"service": name, "files": shown_files},
        )


def _scan_daemon_json(ctx: ScanContext, root: ScanRoot, path: Path) -> None:
    ctx.progress(f"containers: {_shown_path(root, path)}")
    text = _read_text(ctx, root, path)
    if text is None:
        return
    resource = _file_resource(root, path)
    try:
        verdicts = check_daemon_json(text, resource.path or str(path))
    except InputError as exc:
        ctx.emit(error_finding(ctx.catalog, SCANNER, resource, str(exc)))
        return
    emit_verdicts(ctx, verdicts, resource)
