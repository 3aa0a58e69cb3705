"""SARIF 2.1.0 for GitHub code scanning (and any SARIF viewer).

One run, tool ``preaudit``, one rule per control (``CONTROL/RULE`` for a scanner's sub-rule such
as a bandit test id) with the control's title, rationale and remediation, ``security-severity``
and framework tags. Results are the findings that need attention: ``fail`` and ``error``, and
``waived`` ones carried with an external suppression and its justification. Passing and not
applicable findings are not results (code scanning would open alerts for them).

Locations: code scanning rejects a result without ``physicalLocation.artifactLocation.uri`` and
refuses URI schemes other than files, so every result gets a relative path:

* a file in the scanned repository: its path, with ``region.startLine`` when known;
* anything on a host: ``preaudit/hosts/HOST`` (host settings) or ``preaudit/hosts/HOST/PATH``
  (a file on the host), endpoint ``preaudit/endpoints/ENDPOINT``, container
  ``preaudit/containers/NAME``, image ``preaudit/images/IMAGE``, package
  ``preaudit/packages/NAME``; such paths do not exist in the repository, so code scanning shows
  the alert without a source preview. The real resource is also a ``logicalLocation``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from scanners.findings import Finding, ResourceKind, Severity, Status, format_timestamp
from scanners.report.model import ControlInfo, Report
from scanners.report.text import rule_id, value_text

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "preaudit/v1"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_SHOWN = (Status.FAIL, Status.ERROR, Status.WAIVED)


def _uri(*parts: str) -> str:
    path = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return quote(path, safe="/-._~@+")


def artifact_uri(finding: Finding) -> str:
    r = finding.resource
    if r.kind is ResourceKind.FILE and not r.host and r.path:
        return _uri(r.path.removeprefix("./"))
    if r.host and r.path:
        return _uri("preaudit/hosts", r.host, r.path)
    if r.endpoint:
        return _uri("preaudit/endpoints", r.endpoint)
    if r.container:
        return _uri("preaudit/containers", r.container)
    if r.image:
        return _uri("preaudit/images", r.image)
    if r.path:
        return _uri(r.path.removeprefix("./"))
    if r.package:
        return _uri("preaudit/packages", r.package)
    if r.host:
        return _uri("preaudit/hosts", r.host)
    return _uri("preaudit", r.kind.value)


def _location(finding: Finding) -> dict[str, Any]:
    r = finding.resource
    physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(finding)}}
    if r.kind is ResourceKind.FILE and not r.host and r.path:
        physical["artifactLocation"]["uriBaseId"] = "%SRCROOT%"
    physical["region"] = {"startLine": r.line if r.line and r.line > 0 else 1}
    return {
        "physicalLocation": physical,
        "logicalLocations": [{"name": r.label(), "fullyQualifiedName": r.label(), "kind": "resource"}],
    }


def _tags(references: dict[str, list[str]] | Any) -> list[str]:
    tags = ["security", "compliance"]
    for kind, ids in sorted(references.items()):
        tags += [f"{kind}/{i}" for i in ids]
    return tags


def _rule(rid: str, info: ControlInfo, sample: Finding, max_score: float) -> dict[str, Any]:
    # A sub-rule's findings carry per-hit titles; the rule describes them all.
    title = f"{info.title} ({sample.rule})" if sample.rule else info.title
    return {
        "id": rid,
        "name": rid.replace("/", "_").replace("-", "_"),
        "shortDescription": {"text": title},
        "fullDescription": {"text": info.rationale},
        "help": {"text": sample.remediation or info.remediation, "markdown": sample.remediation or info.remediation},
        "defaultConfiguration": {"level": _LEVEL[sample.severity]},
        "properties": {
            "security-severity": f"{max_score:.1f}",
            "tags": _tags({k: list(v) for k, v in info.references.items()}),
            "precision": "very-high",
            "problem.severity": "error" if sample.severity.rank >= Severity.HIGH.rank else "warning",
        },
    }


def _message(finding: Finding) -> str:
    text = finding.message or finding.title
    observed, expected = value_text(finding.evidence.observed), value_text(finding.evidence.expected)
    if observed or expected:
        text += f" (observed: {observed or '-'}; expected: {expected or '-'})"
    return f"{finding.resource.label()}: {text}"


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": rule_id(finding),
        "ruleIndex": rule_index,
        "kind": "open" if finding.status is Status.ERROR else "fail",
        "level": _LEVEL[finding.severity],
        "message": {"text": _message(finding)},
        "locations": [_location(finding)],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {
            "status": finding.status.value,
            "severity": finding.severity.value,
            "security-severity": f"{finding.score:.1f}",
            "scanner": finding.scanner,
            "resource": finding.resource.to_dict(),
            "evidence": finding.evidence.to_dict(),
            "references": finding.references,
        },
    }
    if finding.waiver:
        result["properties"]["waiver"] = finding.waiver
    if finding.status is Status.WAIVED and finding.waiver:
        w = finding.waiver
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": f"{w['justification']} (approved by {w['approver']}, expires {w['expires']})",
            }
        ]
    return result


def sarif_document(report: Report) -> dict[str, Any]:
    shown = [f for f in report.findings if f.status in _SHOWN]
    samples: dict[str, Finding] = {}
    max_scores: dict[str, float] = {}
    for f in shown:
        rid = rule_id(f)
        samples.setdefault(rid, f)
        max_scores[rid] = max(max_scores.get(rid, 0.0), f.score or 0.0)
    rule_ids = sorted(samples)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    rules = [_rule(rid, report.controls[samples[rid].control_id], samples[rid], max_scores[rid]) for rid in rule_ids]
    scan = report.document.scan
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "preaudit",
                "version": report.tool_version,
                "semanticVersion": report.tool_version,
                "rules": rules,
                "properties": {"catalog": dict(report.document.catalog)},
            }
        },
        "automationDetails": {"id": f"preaudit/{scan.id}"},
        "invocations": [
            {
                "executionSuccessful": scan.complete,
                "startTimeUtc": format_timestamp(scan.started_at),
                "endTimeUtc": format_timestamp(scan.finished_at or scan.started_at),
            }
        ],
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index[rule_id(f)]) for f in shown],
        "properties": {"hosts": report.hosts(), "waiversJudgedOn": report.today.isoformat()},
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render_sarif(report: Report) -> str:
    return json.dumps(sarif_document(report), indent=2, ensure_ascii=False) + "\n"
