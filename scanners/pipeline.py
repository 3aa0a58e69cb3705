"""The scan pipeline: every scanner in parallel, findings streamed to disk as they arrive.

:class:`Pipeline` is the mechanics: a pool of worker threads running jobs (one per scanner and
per source: a host, a code tree, the TLS endpoints, a Docker Engine), every finding passing
through one lock to the JSON-lines stream, the collected list and the progress display. A job
that raises becomes a SCAN-001 error finding naming the scanner and source, and the others go
on. Jobs may submit further jobs (a host's audit submits the scan of its TLS ports and files).
:meth:`Pipeline.cancel` (Ctrl-C) stops scheduling, tells running scanners to stop and lets the
caller write what was collected.

:func:`run_scan` is the orchestration behind `preaudit scan`: it plans the jobs from
:class:`ScanOptions`, runs them, and writes ``findings.jsonl`` (streaming), ``findings.json``
(final, atomic, schema-validated, ``complete: false`` when interrupted) and ``raw/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from scanners.catalog import Catalog
from scanners.errors import InputError
from scanners.findings import Finding, Resource, ResourceKind, Status, precise_utcnow
from scanners.findings_file import FindingsDocument, FindingsStream, ScanInfo, write_document
from scanners.fsutil import write_text_atomic
from scanners.host_scan import (
    DEFAULT_HOST_FILES,
    HostCallbacks,
    HostFiles,
    HostOutcome,
    InventoryHost,
    run_host_scan,
)
from scanners.scanning import ScanContext, ScanRoot, TlsEndpoint, error_finding

SCANNERS = ("host", "tls", "secrets", "code", "dependencies", "containers")
FILE_SCANNERS = ("secrets", "code", "dependencies", "containers")
# Versions recorded in the findings document (tool.components): what produced the evidence.
# Python distributions, recorded under their own names (the Docker SDK's is "docker").
COMPONENT_DISTRIBUTIONS = (
    "ansible-core",
    "ansible-runner",
    "sslyze",
    "bandit",
    "detect-secrets",
    "pip-audit",
    "docker",
)
# How long a cancelled scan waits for running scanners to notice before writing what it has.
CANCEL_GRACE_SECONDS = 15.0


@dataclass(frozen=True, slots=True, order=True)
class JobKey:
    """One row of the progress display: a source (host, tree, endpoint set) and a scanner."""

    source: str
    scanner: str


class ProgressSink(Protocol):
    """Where the pipeline reports what it does (the CLI's live display); calls come from any thread."""

    def job_added(self, key: JobKey) -> None: ...
    def job_started(self, key: JobKey) -> None: ...
    def job_message(self, key: JobKey, message: str) -> None: ...
    def job_finished(self, key: JobKey, error: str | None) -> None: ...
    def finding(self, key: JobKey, finding: Finding) -> None: ...


class NullProgress:
    def job_added(self, key: JobKey) -> None:
        pass

    def job_started(self, key: JobKey) -> None:
        pass

    def job_message(self, key: JobKey, message: str) -> None:
        pass

    def job_finished(self, key: JobKey, error: str | None) -> None:
        pass

    def finding(self, key: JobKey, finding: Finding) -> None:
        pass


JobFn = Callable[[ScanContext], object]


@dataclass(slots=True)
class _Job:
    key: JobKey
    fn: JobFn
    resource: Resource


class Pipeline:
    """Worker threads, one findings lock, cancellation. Daemon threads: a scanner stuck in a network
    call can never keep an interrupted scan from writing its findings and exiting."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        stream: FindingsStream | None = None,
        progress: ProgressSink | None = None,
        workers: int = 6,
    ) -> None:
        if workers < 1:
            raise InputError(f"the pipeline needs at least one worker, not {workers}")
        self.catalog = catalog
        self.stream = stream
        self.progress: ProgressSink = progress or NullProgress()
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._findings: list[Finding] = []
        self._scanner_errors: set[str] = set()
        self._closed = False
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition(threading.Lock())
        self._threads = [
            threading.Thread(target=self._work, name=f"preaudit-scan-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- findings ---------------------------------------------------------------------------

    def emit(self, key: JobKey, finding: Finding) -> None:
        """Record one finding: to the stream (flushed), the collected list, the display.

        A scanner-wide error reported identically by several jobs (the same missing
        vulnerability database for every host's dependencies) is kept once.
        """
        with self._lock:
            if self._closed:
                return
            if finding.resource.kind is ResourceKind.SCANNER:
                if finding.fingerprint in self._scanner_errors:
                    return
                self._scanner_errors.add(finding.fingerprint)
            if self.stream is not None:
                self.stream.write(finding)
            self._findings.append(finding)
            self.progress.finding(key, finding)

    @property
    def findings(self) -> list[Finding]:
        with self._lock:
            return list(self._findings)

    def close(self) -> list[Finding]:
        """Stop accepting findings (late ones from a cancelled scanner are dropped) and return them all."""
        with self._lock:
            self._closed = True
            return list(self._findings)

    def context(self, key: JobKey) -> ScanContext:
        return ScanContext(
            self.catalog,
            emit=lambda finding: self.emit(key, finding),
            progress=lambda message: self.progress.job_message(key, message),
            cancelled=self.cancelled,
        )

    # -- jobs -------------------------------------------------------------------------------

    def submit(self, source: str, scanner: str, fn: JobFn, resource: Resource | None = None) -> bool:
        """Queue ``fn(ctx)``; False (and nothing queued) once the scan is cancelled.

        ``resource`` is what an error finding names if ``fn`` raises (default: the scanner).
        """
        key = JobKey(source, scanner)
        with self._idle:
            if self.cancelled.is_set():
                return False
            self._pending += 1
        self.progress.job_added(key)
        self._queue.put(_Job(key, fn, resource or Resource(kind=ResourceKind.SCANNER)))
        return True

    def run_step(self, key: JobKey, fn: JobFn, resource: Resource | None = None) -> bool:
        """Run ``fn(ctx)`` here, as a job would run (display, error finding on an exception).

        For the steps of one job that share state (a host's files, scanned by four scanners).
        False if it raised or the scan is cancelled.
        """
        if self.cancelled.is_set():
            self.progress.job_finished(key, "cancelled")
            return False
        self.progress.job_started(key)
        try:
            fn(self.context(key))
        except Exception as exc:
            message = f"{key.scanner} scanner failed on {key.source}: {_describe(exc)}"
            self.emit(
                key, error_finding(self.catalog, key.scanner, resource or Resource(ResourceKind.SCANNER), message)
            )
            self.progress.job_finished(key, message)
            return False
        self.progress.job_finished(key, "cancelled" if self.cancelled.is_set() else None)
        return True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if self.cancelled.is_set():
                    self.progress.job_finished(job.key, "cancelled")
                else:
                    self.run_step(job.key, job.fn, job.resource)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every job (including jobs submitted by jobs) is done; False on timeout.

        Waits in short slices so that Ctrl-C reaches the main thread promptly.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def cancel(self) -> None:
        self.cancelled.set()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, InputError | OSError) and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --- the scan ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ScanOptions:
    out: Path
    scanners: frozenset[str] = frozenset(SCANNERS)
    inventory: Path | None = None
    hosts: Sequence[InventoryHost] = ()
    code: Sequence[Path] = ()
    tls: Sequence[TlsEndpoint] = ()
    docker: Sequence[str] = ()
    docker_hosts: bool = False
    vuln_db: Path | None = None
    secrets_baseline: Path | None = None
    ca_file: Path | None = None
    tls_profile: str = "intermediate"
    host_files: Sequence[str] = DEFAULT_HOST_FILES
    forks: int | None = None
    timeout: float = 10.0
    host_timeout: int = 300
    workers: int = 6


@dataclass(slots=True)
class ScanOutcome:
    document: FindingsDocument
    findings_path: Path
    stream_path: Path
    raw_dir: Path
    interrupted: bool
    host_seconds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    seconds: float = 0.0


def component_versions() -> dict[str, str]:
    import platform

    versions = {"python": platform.python_version()}
    for dist in COMPONENT_DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["docker-sdk" if dist == "docker" else dist] = metadata.version(dist)
    return versions


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name) or "_"


class _Scan:
    """One run of `preaudit scan`: the jobs, the shared state they fill in, the outputs."""

    def __init__(self, options: ScanOptions, catalog: Catalog, pipeline: Pipeline, workdir: Path) -> None:
        self.options = options
        self.catalog = catalog
        self.pipeline = pipeline
        self.workdir = workdir
        self.raw_dir = options.out / "raw"
        self.vulndb: dict[str, Any] | None = None
        self.host_seconds: dict[str, dict[str, float | None]] = {}
        self.hosts_finished: set[str] = set()
        self.lock = threading.Lock()

    def wants(self, scanner: str) -> bool:
        return scanner in self.options.scanners

    # -- local sources ----------------------------------------------------------------------

    def plan_local(self) -> None:
        options = self.options
        roots = [ScanRoot(path=p) for p in options.code]
        for root in roots:
            source = str(root.path)
            for scanner in FILE_SCANNERS:
                if self.wants(scanner):
                    self.pipeline.submit(source, scanner, self._file_scanner(scanner, [root]))
        if options.tls and self.wants("tls"):
            self.pipeline.submit("endpoints", "tls", self._tls(list(options.tls)))
        if self.wants("containers"):
            for url in options.docker:
                self.pipeline.submit(url, "containers", self._docker(url, None))

    def _file_scanner(self, scanner: str, roots: list[ScanRoot]) -> JobFn:
        options = self.options

        def run(ctx: ScanContext) -> None:
            if scanner == "secrets":
                from scanners.secrets import scan_secrets

                scan_secrets(ctx, roots, baseline=options.secrets_baseline)
            elif scanner == "code":
                from scanners.code import scan_code

                scan_code(ctx, roots)
            elif scanner == "dependencies":
                from scanners.dependencies import scan_dependencies

                stats = scan_dependencies(ctx, roots, vulndb=options.vuln_db)
                if stats.vulndb is not None:
                    with self.lock:
                        self.vulndb = self.vulndb or stats.vulndb
            elif scanner == "containers":
                from scanners.containers import scan_container_files

                scan_container_files(ctx, roots)

        return run

    def _tls(self, endpoints: list[TlsEndpoint]) -> JobFn:
        options = self.options

        def run(ctx: ScanContext) -> None:
            from scanners.tls import scan_tls

            scan_tls(ctx, endpoints, timeout=options.timeout, ca_file=options.ca_file, profile=options.tls_profile)

        return run

    def _docker(self, url: str, host: str | None) -> JobFn:
        options = self.options

        def run(ctx: ScanContext) -> None:
            from scanners.containers import scan_docker_runtime

            scan_docker_runtime(ctx, url, host=host, timeout=options.timeout)

        return run

    # -- hosts ------------------------------------------------------------------------------

    def plan_hosts(self) -> None:
        options = self.options
        if options.inventory is None or not options.hosts:
            return
        audit = self.wants("host") or self.wants("tls") or (options.docker_hosts and self.wants("containers"))
        collect = any(self.wants(s) for s in FILE_SCANNERS)
        if not audit and not collect:
            return
        fleet_resource = Resource(kind=ResourceKind.SCANNER)
        patterns = list(options.host_files) if collect else []
        self.pipeline.submit("fleet", "host", self._fleet(audit, collect, patterns), fleet_resource)

    def _fleet(self, audit: bool, discover_files: bool, patterns: list[str]) -> JobFn:
        options = self.options
        assert options.inventory is not None
        inventory = options.inventory
        by_name = {h.name: h for h in options.hosts}

        def run(ctx: ScanContext) -> None:
            for name in by_name:
                if audit and self.wants("host"):
                    self.pipeline.progress.job_added(JobKey(name, "host"))
            callbacks = HostCallbacks(
                emit=self._host_emit,
                on_started=lambda name: self._host_started(name, audit),
                on_audit=lambda name, result, outcome: self._host_audited(by_name[name], result, outcome),
                on_files=lambda name, files: self._host_files(by_name[name], files),
                on_done=lambda name, outcome: self._host_done(name, outcome, audit),
            )
            result = run_host_scan(
                self.catalog,
                inventory,
                list(by_name.values()),
                self.workdir / "ansible",
                callbacks,
                audit=audit,
                evaluate=self.wants("host"),
                file_patterns=patterns,
                discover_files=discover_files,
                discover_tls=self.wants("tls"),
                forks=options.forks,
                connect_timeout=options.timeout,
                task_timeout=options.host_timeout,
                cancelled=ctx.cancelled,
            )
            ctx.progress(f"ansible run {result.status} in {result.seconds:.1f}s")
            shutil.rmtree(self.workdir / "ansible", ignore_errors=True)

        return run

    def _host_emit(self, host: str, finding: Finding) -> None:
        self.pipeline.emit(JobKey(host, "host"), finding)

    def _host_started(self, host: str, audit: bool) -> None:
        if audit and self.wants("host"):
            self.pipeline.progress.job_started(JobKey(host, "host"))

    def _host_done(self, host: str, outcome: HostOutcome, audit: bool) -> None:
        with self.lock:
            self.host_seconds[host] = {"task": outcome.audit_seconds, "module": outcome.module_seconds}
            finished = host in self.hosts_finished
            self.hosts_finished.add(host)
        if audit and self.wants("host") and not finished:
            self.pipeline.progress.job_finished(JobKey(host, "host"), outcome.error)

    def _write_raw(self, kind: str, host: str, data: dict[str, Any]) -> None:
        path = self.raw_dir / kind / f"{_safe_name(host)}.json"
        write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def _host_audited(self, host: InventoryHost, result: dict[str, Any], outcome: HostOutcome) -> None:
        key = JobKey(host.name, "host")
        if self.wants("host"):
            with self.lock:
                self.hosts_finished.add(host.name)
            self.pipeline.progress.job_message(
                key, f"audit {outcome.audit_seconds or 0:.2f}s (checks {outcome.module_seconds or 0:.2f}s)"
            )
            self.pipeline.progress.job_finished(key, None)
        facts = result.get("host") or {}
        timing = {"task_seconds": outcome.audit_seconds, "checks_seconds": outcome.module_seconds}
        self._write_raw(
            "host_audit",
            host.name,
            {
                "host": host.name,
                "controls": result.get("controls"),
                "facts": facts,
                "platform": result.get("platform"),
                "timing": timing,
            },
        )
        ports = [int(p) for p in facts.get("tls_ports") or []]
        if ports and self.wants("tls"):
            endpoints = [host.tls_endpoint(p) for p in ports]
            self.pipeline.submit(host.name, "tls", self._tls(endpoints), Resource(ResourceKind.HOST, host=host.name))
        if self.options.docker_hosts and self.wants("containers") and facts.get("docker"):
            self.pipeline.submit(
                host.name, "docker", self._docker_host(host), Resource(ResourceKind.HOST, host=host.name)
            )

    def _docker_host(self, host: InventoryHost) -> JobFn:
        def run(ctx: ScanContext) -> None:
            from scanners.containers import scan_docker_runtime
            from scanners.docker_ssh import REMOTE_SOCKET, forwarded_docker_socket

            with forwarded_docker_socket(host, self.workdir, timeout=self.options.timeout) as url:
                # Findings name the engine where it is, not the scan's temporary relay socket,
                # so that they keep their fingerprints from one scan to the next.
                where = f"ssh://{host.name}{REMOTE_SOCKET}"

                def emit(finding: Finding) -> None:
                    if finding.resource.endpoint == url:
                        resource = dataclasses.replace(finding.resource, endpoint=where)
                        message = finding.message.replace(url, where)
                        finding = dataclasses.replace(finding, resource=resource, message=message, fingerprint="")
                    ctx.emit(finding)

                relayed = ScanContext(ctx.catalog, emit=emit, progress=ctx.progress, cancelled=ctx.cancelled)
                scan_docker_runtime(relayed, url, host=host.name, timeout=self.options.timeout)

        return run

    def _host_files(self, host: InventoryHost, files: HostFiles) -> None:
        self._write_raw("host_files", host.name, files.listing())
        scanners = [s for s in FILE_SCANNERS if self.wants(s)]
        for scanner in scanners:
            self.pipeline.progress.job_added(JobKey(host.name, scanner))
        submitted = self.pipeline.submit(
            host.name,
            "files",
            self._scan_host_files(host, files, scanners),
            Resource(ResourceKind.HOST, host=host.name),
        )
        if not submitted:
            for scanner in scanners:
                self.pipeline.progress.job_finished(JobKey(host.name, scanner), "cancelled")

    def _scan_host_files(self, host: InventoryHost, files: HostFiles, scanners: list[str]) -> JobFn:
        def run(ctx: ScanContext) -> None:
            for finding in files.skipped_findings(self.catalog, "host-files") + files.discovery_findings(
                self.catalog, "host-files"
            ):
                ctx.emit(finding)
            copy = Path(tempfile.mkdtemp(prefix=f"files-{_safe_name(host.name)}-", dir=self.workdir))
            sources = files.sources()
            try:
                files.extract(copy)
                roots = [ScanRoot(path=copy, host=host.name, display="/")]
                for scanner in scanners:
                    self.pipeline.run_step(
                        JobKey(host.name, scanner),
                        _with_sources(self._file_scanner(scanner, roots), sources),
                        Resource(ResourceKind.HOST, host=host.name),
                    )
            finally:
                shutil.rmtree(copy, ignore_errors=True)

        return run

    # -- the document -----------------------------------------------------------------------

    def targets(self) -> dict[str, Any]:
        options = self.options
        targets: dict[str, Any] = {}
        if options.inventory is not None:
            targets["inventory"] = str(options.inventory)
            targets["hosts"] = [h.name for h in options.hosts]
            targets["host_files"] = list(options.host_files)
            targets["host_discovery"] = any(self.wants(s) for s in FILE_SCANNERS)
            targets["docker_hosts"] = options.docker_hosts
        if options.code:
            targets["code"] = [str(p) for p in options.code]
        if options.tls:
            targets["tls"] = [
                f"{e.address}:{e.port}" + (f"={e.server_name}" if e.server_name else "") for e in options.tls
            ]
        if options.docker:
            targets["docker"] = list(options.docker)
        return targets


def with_source(finding: Finding, sources: dict[str, str]) -> Finding:
    """``finding`` with ``evidence.details.source`` saying where discovery found its file."""
    source = sources.get(finding.resource.path or "")
    if source is None or "source" in finding.evidence.details:
        return finding
    evidence = dataclasses.replace(finding.evidence, details={**finding.evidence.details, "source": source})
    return dataclasses.replace(finding, evidence=evidence)


def _with_sources(fn: JobFn, sources: dict[str, str]) -> JobFn:
    """``fn`` run with a context whose findings name where discovery found their files."""
    if not sources:
        return fn

    def run(ctx: ScanContext) -> object:
        def emit(finding: Finding) -> None:
            ctx.emit(with_source(finding, sources))

        return fn(ScanContext(ctx.catalog, emit=emit, progress=ctx.progress, cancelled=ctx.cancelled))

    return run


@contextlib.contextmanager
def _private_workdir() -> Iterator[Path]:
    """An owner-only (0700) directory for host file copies and ansible-runner; always removed."""
    path = Path(tempfile.mkdtemp(prefix="preaudit-scan-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def prepare_output(out: Path) -> tuple[Path, Path, Path]:
    """(findings.jsonl, findings.json, raw/) under ``out``; a previous scan's stream and raw host outputs go."""
    out.mkdir(parents=True, exist_ok=True)
    stream_path = out / "findings.jsonl"
    stream_path.unlink(missing_ok=True)
    raw = out / "raw"
    for kind in ("host_audit", "host_files"):
        shutil.rmtree(raw / kind, ignore_errors=True)
    return stream_path, out / "findings.json", raw


def run_scan(
    options: ScanOptions,
    catalog: Catalog,
    *,
    progress: ProgressSink | None = None,
    on_interrupt: Callable[[], None] = lambda: None,
) -> ScanOutcome:
    """Run every planned job, streaming findings; Ctrl-C ends it early with ``complete: false``."""
    stream_path, findings_path, raw_dir = prepare_output(options.out)
    info = ScanInfo(scanners=sorted(options.scanners), hosts=[h.name for h in options.hosts])
    started = time.monotonic()
    interrupted = False
    with _private_workdir() as workdir, FindingsStream(stream_path) as stream:
        pipeline = Pipeline(catalog, stream=stream, progress=progress, workers=options.workers)
        scan = _Scan(options, catalog, pipeline, workdir)
        info.targets = scan.targets()
        try:
            scan.plan_hosts()
            scan.plan_local()
            pipeline.wait()
        except KeyboardInterrupt:
            interrupted = True
            pipeline.cancel()
            on_interrupt()
            with contextlib.suppress(KeyboardInterrupt):
                pipeline.wait(CANCEL_GRACE_SECONDS)
        findings = pipeline.close()
        pipeline.shutdown()
        info.finished_at = precise_utcnow()
        info.complete = not interrupted
        info.vulndb = scan.vulndb
        document = FindingsDocument(
            scan=info, catalog=catalog.metadata(), findings=findings, components=component_versions()
        )
        write_document(findings_path, document)
    return ScanOutcome(
        document=document,
        findings_path=findings_path,
        stream_path=stream_path,
        raw_dir=raw_dir,
        interrupted=interrupted,
        host_seconds=scan.host_seconds,
        seconds=time.monotonic() - started,
    )


def failing(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.status in (Status.FAIL, Status.ERROR)]
