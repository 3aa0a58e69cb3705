"""The host scanner: the host audit module over an inventory, one ansible-runner run for the fleet.

``playbooks/scan.yml`` runs ``library/host_audit.py`` (every declarative host check of the
catalog, one module call per host) and, when file scanners are selected,
``library/host_files.py`` (the host's configuration and secret-bearing files as one archive, one
call per host), with ``strategy: free`` and the requested forks. Which files those are is found
on the host itself (module_utils/preaudit_discovery.py: systemd units, nginx, Compose projects,
a bounded sweep of the usual application roots); explicit globs add to it. ansible-runner hands every
event to :func:`run_host_scan`'s handler as it happens, so each host's findings are emitted the
moment that host's audit returns, and its files can be scanned while other hosts are still
being audited. An unreachable host, or a host whose audit fails, is one SCAN-001 error finding
naming it; the other hosts are unaffected.

The events carrying file archives hold secrets: they are never written to ansible-runner's
artifact directory (the handler tells the runner not to), and the caller removes the runner's
private directory after the run.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from scanners.catalog import Catalog, Control
from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Status
from scanners.inventory import inventory_hosts, inventory_listing
from scanners.project import project_root
from scanners.scanning import TlsEndpoint, error_finding

SCANNER = "host"
PLAYBOOK = "scan.yml"
AUDIT_MODULE = "host_audit"
FILES_MODULE = "host_files"
# What the file scanners read on each host besides what discovery names (environment files,
# Compose files, Dockerfiles, requirements, the applications' code, /etc/docker/daemon.json, the
# TLS keys and certificates nginx names, stray files of the sweep): nothing. Explicit absolute
# globs (`--host-files`) add to it; `**` crosses directories, hidden files match.
DEFAULT_HOST_FILES: tuple[str, ...] = ()
_STATUS = {
    "pass": Status.PASS,
    "fail": Status.FAIL,
    "error": Status.ERROR,
    "not_applicable": Status.NOT_APPLICABLE,
}


@dataclass(frozen=True, slots=True)
class InventoryHost:
    """A host of the inventory with the variables the scan needs (connection, lab port mapping)."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    def tls_endpoint(self, port: int) -> TlsEndpoint:
        """Where the controller reaches the host's TLS port ``port``.

        A lab host exposes its 443 on 127.0.0.1:``lab_https_port``, and every other port on its
        veth address ``lab_address``; any other host is reached at ``ansible_host``. The server
        name (SNI, certificate name) is ``preaudit_tls_server_name`` or the inventory name.
        """
        server_name = str(self.vars.get("preaudit_tls_server_name") or self.name)
        if port == 443 and self.vars.get("lab_https_port"):
            return TlsEndpoint("127.0.0.1", int(self.vars["lab_https_port"]), server_name, self.name)
        address = str(self.vars.get("lab_address") or self.address)
        return TlsEndpoint(address, port, server_name, self.name)


_PLAIN = (str, int, float, bool, list, dict)


def load_inventory(inventory: Path, limit: str | None = None) -> list[InventoryHost]:
    """The hosts of ``inventory`` (any format Ansible reads), restricted to the pattern ``limit``."""
    listing = inventory_listing(inventory, limit)
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    return [
        InventoryHost(name, {k: v for k, v in (hostvars.get(name) or {}).items() if isinstance(v, _PLAIN)})
        for name in inventory_hosts(listing)
    ]


def audit_findings(catalog: Catalog, host: str, result: dict[str, Any]) -> list[Finding]:
    """Findings from one host's host_audit result: one per host check of the catalog, or, for a
    check over discovered files (``paths_from``), one per file, naming where discovery found it.

    A control the module returned no result for is an error of that control (never a silent
    pass); ``not_applicable`` keeps the module's reason as evidence.
    """
    controls = result.get("controls")
    if not isinstance(controls, dict):
        raise ValueError("the host audit returned no 'controls' mapping")  # noqa: TRY004 - a bad result, not a bad call
    resource = Resource(kind=ResourceKind.HOST, host=host)
    findings = []
    for control in catalog.by_evaluator("host"):
        raw = controls.get(control.id)
        if not isinstance(raw, dict) or raw.get("status") not in _STATUS:
            message = "the host audit returned no result for this control"
            findings.append(
                control.finding(
                    Status.ERROR,
                    resource,
                    SCANNER,
                    evidence=Evidence(observed=message, expected=dict(control.check)),
                    message=message,
                )
            )
            continue
        items = [i for i in raw.get("items") or [] if isinstance(i, dict) and i.get("status") in _STATUS]
        if items:
            findings += [_finding(control, _file_resource(host, item), item) for item in items]
        else:
            findings.append(_finding(control, resource, raw))
    return findings


def _file_resource(host: str, item: dict[str, Any]) -> Resource:
    return Resource(kind=ResourceKind.FILE, host=host, path=str(item.get("path")))


def _finding(control: Control, resource: Resource, raw: dict[str, Any]) -> Finding:
    status = _STATUS[str(raw["status"])]
    message = str(raw.get("message") or "")
    observed = raw.get("observed")
    if observed is None and status in (Status.NOT_APPLICABLE, Status.ERROR) and message:
        observed = message
    details = dict(raw.get("details") or {})
    return control.finding(
        status,
        resource,
        SCANNER,
        evidence=Evidence(observed=observed, expected=raw.get("expected"), details=details),
        message=message,
    )


@dataclass(slots=True)
class HostFiles:
    """One host's collected files (result of library/host_files.py) and the discovery that named
    them (``platform``, schema in library/host_audit.py's RETURN; None without discovery)."""

    host: str
    archive: bytes
    files: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    unmatched: list[str]
    platform: dict[str, Any] | None = None

    @classmethod
    def from_result(cls, host: str, result: dict[str, Any]) -> HostFiles:
        try:
            archive = base64.b64decode(str(result.get("archive", "")), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the file collection returned an archive that is not base64") from None
        return cls(
            host=host,
            archive=archive,
            files=list(result.get("files") or []),
            skipped=list(result.get("not_collected") or []),
            unmatched=[str(p) for p in result.get("unmatched") or []],
            platform=result["platform"] if isinstance(result.get("platform"), dict) else None,
        )

    def listing(self) -> dict[str, Any]:
        """What was collected and where discovery found it, without content: for the raw evidence
        directory."""
        return {
            "host": self.host,
            "files": self.files,
            "skipped": self.skipped,
            "unmatched": self.unmatched,
            "platform": self.platform,
        }

    def sources(self) -> dict[str, str]:
        """Host path -> where discovery found the file, for the files it named."""
        return {str(f["path"]): str(f["source"]) for f in self.files if f.get("source")}

    def discovery_findings(self, catalog: Catalog, scanner: str) -> list[Finding]:
        """An error finding when the discovery sweep stopped at a bound: stray files beyond it
        were not looked for, and the report must not suggest that they were."""
        sweep = (self.platform or {}).get("sweep") or {}
        if not sweep.get("truncated"):
            return []
        bounds = sweep.get("bounds") or {}
        hit = ", ".join(f"{name} ({bounds.get(name)})" for name in sweep.get("hit") or [])
        where = ", ".join(sweep.get("incomplete") or []) or "the sweep roots"
        raise_it = " or ".join(f"preaudit_discovery_{name}" for name in sweep.get("hit") or [])
        message = (
            f"{self.host}: discovery stopped at {hit} after {sweep.get('examined')} files: {where} not searched "
            f"completely (raise the host's {raise_it}, or narrow preaudit_discovery_roots)"
        )
        return [error_finding(catalog, scanner, Resource(kind=ResourceKind.HOST, host=self.host), message)]

    def extract(self, directory: Path) -> None:
        """Unpack into ``directory`` (absolute paths become relative to it); refuses links and escapes."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.archive), mode="r:gz") as archive:
            members = []
            for member in archive.getmembers():
                if not member.isreg():
                    raise ValueError(f"the archive holds {member.name}, which is not a regular file")
                members.append(member)
            archive.extractall(directory, members=members, filter="data")

    def skipped_findings(self, catalog: Catalog, scanner: str) -> list[Finding]:
        """An error finding for every matching file that was not read (links are not files to read)."""
        findings = []
        for item in self.skipped:
            if item.get("quiet"):
                continue
            path = str(item.get("path"))
            resource = Resource(kind=ResourceKind.FILE, host=self.host, path=path)
            findings.append(error_finding(catalog, scanner, resource, f"{path}: not collected: {item.get('reason')}"))
        return findings


@dataclass(slots=True)
class HostOutcome:
    """What happened on one host during the run."""

    name: str
    audited: bool = False
    files: bool = False
    error: str | None = None
    audit_seconds: float | None = None  # the task as ansible measured it (connection included)
    module_seconds: float | None = None  # the checks themselves, measured by the module
    started: float | None = None
    finished: float | None = None


@dataclass(slots=True)
class HostScanResult:
    rc: int | None
    status: str
    hosts: dict[str, HostOutcome]
    seconds: float


@dataclass(slots=True)
class HostCallbacks:
    """What the caller does with each host's results as they arrive (called in the runner's thread)."""

    emit: Callable[[str, Finding], None]
    on_started: Callable[[str], None] = lambda _host: None
    on_audit: Callable[[str, dict[str, Any], HostOutcome], None] = lambda _host, _result, _outcome: None
    on_files: Callable[[str, HostFiles], None] = lambda _host, _files: None
    on_done: Callable[[str, HostOutcome], None] = lambda _host, _outcome: None


def _message(result: dict[str, Any]) -> str:
    message = str(result.get("msg") or result.get("reason") or "").strip()
    if not message and result.get("stderr"):
        message = str(result["stderr"]).strip()
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no message"


def _action(data: dict[str, Any]) -> str:
    action = str(data.get("task_action") or data.get("resolved_action") or "")
    return action.rsplit(".", 1)[-1]


class _EventHandler:
    """Turns ansible-runner events into findings and callbacks, one host at a time."""

    def __init__(
        self,
        catalog: Catalog,
        hosts: Sequence[InventoryHost],
        callbacks: HostCallbacks,
        *,
        audit: bool,
        evaluate: bool,
        collect: bool,
    ) -> None:
        self.catalog = catalog
        self.callbacks = callbacks
        self.audit = audit
        self.evaluate = evaluate
        self.collect = collect
        self.outcomes = {h.name: HostOutcome(h.name) for h in hosts}
        self.lock = threading.Lock()

    def _host_error(self, outcome: HostOutcome, message: str) -> None:
        resource = Resource(kind=ResourceKind.HOST, host=outcome.name)
        self.callbacks.emit(outcome.name, error_finding(self.catalog, SCANNER, resource, message))

    def _finish(self, outcome: HostOutcome) -> None:
        if outcome.finished is None:
            outcome.finished = time.monotonic()
            self.callbacks.on_done(outcome.name, outcome)

    def _complete(self, outcome: HostOutcome) -> bool:
        return (outcome.audited or not self.audit) and (outcome.files or not self.collect)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        outcome = self.outcomes.get(str(data.get("host", "")))
        if outcome is None or not kind.startswith("runner_on_"):
            return kind not in ("runner_on_ok", "runner_on_failed")
        with self.lock:
            self._handle(kind, data, outcome)
        # Never write task results to the artifact directory: file archives hold secrets.
        return False

    def _handle(self, kind: str, data: dict[str, Any], outcome: HostOutcome) -> None:
        action = _action(data)
        result = data.get("res") or {}
        if kind == "runner_on_start" and outcome.started is None:
            outcome.started = time.monotonic()
            self.callbacks.on_started(outcome.name)
        elif kind == "runner_on_unreachable":
            outcome.error = f"{outcome.name}: unreachable: {_message(result)}"
            self._host_error(outcome, outcome.error)
            self._finish(outcome)
        elif kind == "runner_on_failed" and action == AUDIT_MODULE:
            outcome.audited = True
            outcome.error = f"{outcome.name}: host audit failed: {_message(result)}"
            self._host_error(outcome, outcome.error)
        elif kind == "runner_on_failed" and action == FILES_MODULE:
            outcome.files = True
            message = f"{outcome.name}: file collection failed: {_message(result)}"
            outcome.error = outcome.error or message
            self._host_error(outcome, message)
        elif kind == "runner_on_ok" and action == AUDIT_MODULE:
            outcome.audited = True
            outcome.audit_seconds = _float(data.get("duration"))
            outcome.module_seconds = _float((result.get("host") or {}).get("duration"))
            try:
                findings = audit_findings(self.catalog, outcome.name, result) if self.evaluate else []
            except ValueError as exc:
                outcome.error = f"{outcome.name}: {exc}"
                self._host_error(outcome, outcome.error)
            else:
                for finding in findings:
                    self.callbacks.emit(outcome.name, finding)
                self.callbacks.on_audit(outcome.name, result, outcome)
        elif kind == "runner_on_ok" and action == FILES_MODULE:
            outcome.files = True
            try:
                collected = HostFiles.from_result(outcome.name, result)
            except ValueError as exc:
                self._host_error(outcome, f"{outcome.name}: {exc}")
            else:
                self.callbacks.on_files(outcome.name, collected)
        if self._complete(outcome):
            self._finish(outcome)

    def finish_all(self, status: str, cancelled: bool) -> None:
        """Hosts the run left without a result: an error each, unless the scan was cancelled."""
        with self.lock:
            for outcome in self.outcomes.values():
                if outcome.finished is not None:
                    continue
                if not cancelled and outcome.error is None:
                    missing = [
                        what
                        for what, wanted, done in (
                            ("host audit", self.audit, outcome.audited),
                            ("file collection", self.collect, outcome.files),
                        )
                        if wanted and not done
                    ]
                    outcome.error = f"{outcome.name}: no result for the {' and '.join(missing)} (ansible run {status})"
                    self._host_error(outcome, outcome.error)
                self._finish(outcome)


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


def _environment(connect_timeout: float) -> dict[str, str]:
    root = project_root()
    return {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_TIMEOUT": str(max(1, int(connect_timeout))),
        # Nothing of a scan belongs in the fact cache or a retry file.
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }


def run_host_scan(
    catalog: Catalog,
    inventory: Path,
    hosts: Sequence[InventoryHost],
    private_dir: Path,
    callbacks: HostCallbacks,
    *,
    audit: bool = True,
    evaluate: bool = True,
    file_patterns: Iterable[str] = (),
    discover_files: bool = False,
    discover_tls: bool = True,
    forks: int | None = None,
    connect_timeout: float = 10.0,
    task_timeout: int = 300,
    cancelled: threading.Event | None = None,
) -> HostScanResult:
    """Audit ``hosts`` of ``inventory`` (and collect their files) in one ansible-runner run.

    ``audit`` runs the host audit module; ``evaluate`` sends it the catalog's host checks and
    emits their findings (without it the module only reports host facts such as TLS ports).
    ``discover_files`` collects the files discovery names on each host, ``file_patterns`` those
    matching these absolute globs; either runs the file collection.

    ``private_dir`` is ansible-runner's private data directory; the caller creates it
    owner-only and removes it afterwards. Findings and results go to ``callbacks`` as each
    host's events arrive.
    """
    patterns = list(file_patterns)
    relative = [p for p in patterns if not p.startswith("/")]
    if relative:
        raise InputError(f"host file patterns must be absolute paths: {', '.join(relative)}")
    collect = bool(patterns) or discover_files
    if not audit and not collect:
        return HostScanResult(None, "nothing to do", {}, 0.0)
    handler = _EventHandler(catalog, hosts, callbacks, audit=audit, evaluate=audit and evaluate, collect=collect)
    stop = cancelled or threading.Event()
    extravars: dict[str, Any] = {
        "preaudit_audit": audit,
        "preaudit_host_checks": catalog.host_checks() if audit and evaluate else [],
        "preaudit_discover_tls": discover_tls,
        "preaudit_discover_platform": discover_files,
        "preaudit_collect_files": collect,
        "preaudit_host_files": patterns,
        "preaudit_task_timeout": int(task_timeout),
    }
    private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(project_root()),
        playbook=str(project_root() / "playbooks" / PLAYBOOK),
        inventory=str(inventory.resolve()),
        limit=",".join(h.name for h in hosts),
        envvars=_environment(connect_timeout),
        extravars=extravars,
        forks=forks,
        quiet=True,
        event_handler=handler,
        cancel_callback=stop.is_set,
        suppress_env_files=True,
    )
    handler.finish_all(str(runner.status), stop.is_set())
    return HostScanResult(runner.rc, str(runner.status), handler.outcomes, time.monotonic() - started)
