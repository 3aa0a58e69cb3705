"""``scan_tls``: every TLS control on every endpoint, findings emitted as each endpoint finishes.

Stage 1 probes all endpoints in parallel (does it answer like TLS, within the timeout?) and reads
the HTTPS headers of those that do; stage 2 scans those with one sslyze run. An endpoint that
cannot be assessed becomes one SCAN-001 error finding naming it; a check that cannot decide
becomes an error finding of its own control; neither stops the other endpoints or checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from sslyze.scanner.models import ServerScanResult, ServerScanStatusEnum

from scanners.catalog import Control
from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, ResourceKind, Status, utcnow
from scanners.scanning import ScanContext, TlsEndpoint, error_finding
from scanners.tls.checks import CHECKS
from scanners.tls.http_headers import HttpSnapshot, fetch_headers
from scanners.tls.mozilla import deviation_owners, profile_deviations, route
from scanners.tls.observation import CheckError, Observation, Verdict
from scanners.tls.probe import probe_tls
from scanners.tls.settings import ScanSettings, build_settings
from scanners.tls.sslyze_run import Target, run_sslyze

SCANNER = "tls"
MAX_PROBE_THREADS = 16


def endpoint_resource(endpoint: TlsEndpoint) -> Resource:
    return Resource(kind=ResourceKind.ENDPOINT, host=endpoint.host, endpoint=endpoint.label)


def _validated(endpoints: Sequence[TlsEndpoint]) -> list[TlsEndpoint]:
    for endpoint in endpoints:
        if not isinstance(endpoint, TlsEndpoint):
            raise InputError(f"TLS endpoint {endpoint!r} is not a TlsEndpoint")
        if not endpoint.address or not isinstance(endpoint.address, str):
            raise InputError(f"TLS endpoint {endpoint.label}: empty address")
        if not isinstance(endpoint.port, int) or not 0 < endpoint.port < 65536:
            raise InputError(f"TLS endpoint {endpoint.address}:{endpoint.port}: port must be 1-65535")
    return list(dict.fromkeys(endpoints))  # the same endpoint twice would repeat every finding


def _probe(endpoint: TlsEndpoint, settings: ScanSettings) -> tuple[TlsEndpoint, str | None, HttpSnapshot | str]:
    result = probe_tls(endpoint, settings.timeout)
    if result.ip is None:
        return endpoint, None, result.error or "unreachable"
    return endpoint, result.ip, fetch_headers(result.ip, endpoint.port, endpoint.server_name, settings.timeout)


def _unreachable(ctx: ScanContext, endpoint: TlsEndpoint, reason: str) -> None:
    message = f"TLS endpoint {endpoint.label}: {reason}"
    ctx.emit(error_finding(ctx.catalog, SCANNER, endpoint_resource(endpoint), message))


def _probe_all(
    ctx: ScanContext, endpoints: list[TlsEndpoint], settings: ScanSettings
) -> list[tuple[Target, HttpSnapshot]]:
    ctx.progress(f"tls: probing {len(endpoints)} endpoint(s)")
    reachable: list[tuple[Target, HttpSnapshot]] = []
    with ThreadPoolExecutor(max_workers=min(MAX_PROBE_THREADS, len(endpoints)), thread_name_prefix="tls-probe") as pool:
        futures = [pool.submit(_probe, endpoint, settings) for endpoint in endpoints]
        for future in as_completed(futures):
            endpoint, ip, outcome = future.result()
            if ip is None or isinstance(outcome, str):
                _unreachable(ctx, endpoint, str(outcome))
            else:
                reachable.append((Target(endpoint, ip), outcome))
    return reachable


def _verdicts(controls: list[Control], obs: Observation) -> tuple[dict[str, Verdict], dict[str, str]]:
    verdicts: dict[str, Verdict] = {}
    errors: dict[str, str] = {}
    for control in controls:
        check = CHECKS.get(str(control.check["property"]))
        if check is None:
            errors[control.id] = f"no TLS check evaluates property {control.check['property']!r}"
            continue
        try:
            verdicts[control.id] = check(obs)
        except CheckError as exc:
            errors[control.id] = str(exc)
        except Exception as exc:  # a defect in one check must not cost the other controls their findings
            errors[control.id] = f"internal error in the {control.id} check: {type(exc).__name__}: {exc}"
    return verdicts, errors


def _finding(
    control: Control, endpoint: TlsEndpoint, verdict: Verdict, deviations: dict[str, str], settings: ScanSettings
) -> Finding:
    status, message, severity = verdict.status, verdict.message, verdict.severity
    details: dict[str, Any] = dict(verdict.details)
    if "mozilla-tls" in control.references:
        details["profile"] = f"mozilla-{settings.profile_name}"
    if deviations:
        details["mozilla_deviations"] = deviations
        if status != Status.FAIL:
            status, severity = Status.FAIL, None
            message = "; ".join(deviations.values())
    return control.finding(
        status,
        endpoint_resource(endpoint),
        SCANNER,
        evidence=Evidence(observed=verdict.observed, expected=verdict.expected, details=details),
        message=f"{endpoint.label}: {message}",
        severity=severity,
    )


def _report(
    ctx: ScanContext,
    controls: list[Control],
    target: Target,
    result: ServerScanResult,
    http: HttpSnapshot,
    settings: ScanSettings,
) -> None:
    endpoint = target.endpoint
    if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
        _unreachable(ctx, endpoint, f"sslyze could not connect: {result.connectivity_error_trace or 'no detail'}")
        return
    obs = Observation(endpoint, result.scan_result, http, settings, utcnow())
    verdicts, errors = _verdicts(controls, obs)
    deviations, incomplete = profile_deviations(result, settings.profile)
    routed, unowned = route(deviations, deviation_owners(ctx.catalog), verdicts)
    resource = endpoint_resource(endpoint)
    for control in controls:
        own = routed.get(control.id, {})
        if control.id in verdicts:
            ctx.emit(_finding(control, endpoint, verdicts[control.id], own, settings))
        elif own:  # the check could not decide but the profile checker saw the deviation
            failed = Verdict(Status.FAIL, "", details={"check_error": errors[control.id]})
            ctx.emit(_finding(control, endpoint, failed, own, settings))
        else:
            reason = errors[control.id] + (f" (Mozilla profile check skipped: {incomplete})" if incomplete else "")
            ctx.emit(error_finding(ctx.catalog, SCANNER, resource, f"{endpoint.label}: {reason}", control.id))
    if unowned:
        listed = "; ".join(f"{key}: {text}" for key, text in sorted(unowned.items()))
        message = f"{endpoint.label}: profile deviation(s) no TLS control owns: {listed}"
        ctx.emit(error_finding(ctx.catalog, SCANNER, resource, message))


def scan_tls(
    ctx: ScanContext,
    endpoints: Sequence[TlsEndpoint],
    *,
    timeout: float = 10.0,
    min_days_valid: int = 30,
    ca_file: Path | None = None,
    profile: str = "intermediate",
    hsts_min_age: int = 63072000,
) -> None:
    """Scan ``endpoints`` against every TLS control of ``ctx.catalog`` and emit one finding per control each.

    Endpoints that cannot be assessed (unresolvable, refused, silent, not TLS) get one SCAN-001
    error finding each, within ``timeout`` seconds. ``ca_file`` is what TLS-006 trusts (default:
    the system trust store); ``profile`` is the Mozilla profile, ``intermediate`` or ``modern``.
    Raises InputError for bad arguments, before anything is scanned.
    """
    settings = build_settings(
        timeout=timeout, min_days_valid=min_days_valid, ca_file=ca_file, profile=profile, hsts_min_age=hsts_min_age
    )
    targets = _validated(endpoints)
    controls = ctx.catalog.by_evaluator("tls")
    if not targets or not controls or ctx.cancelled.is_set():
        return
    reachable = _probe_all(ctx, targets, settings)
    if not reachable or ctx.cancelled.is_set():
        return
    http_by_endpoint = {target.endpoint: http for target, http in reachable}
    ctx.progress(f"tls: scanning {len(reachable)} endpoint(s) with sslyze")
    for target, result in run_sslyze([target for target, _ in reachable], settings):
        if ctx.cancelled.is_set():
            return
        _report(ctx, controls, target, result, http_by_endpoint[target.endpoint], settings)
        ctx.progress(f"tls: {target.endpoint.label} done")
