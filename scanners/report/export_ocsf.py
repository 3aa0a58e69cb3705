"""OCSF Compliance Finding events (schema 1.1.0, class 2003), one per finding, as a JSON array.

Security data lakes and SIEMs (Amazon Security Lake, Splunk, ...) ingest OCSF. Mapping:
``compliance.status_id`` 1 Pass, 3 Fail, 2 Warning for a check that could not run; the finding
lifecycle ``status_id`` 1 New, 3 Suppressed (waived), 4 Resolved (passing, not applicable); the
severity maps to ``severity_id`` 1-5 (Informational to Critical).
"""

from __future__ import annotations

import json
from typing import Any

from scanners.findings import Finding, Severity, Status
from scanners.report.model import Report
from scanners.report.text import rule_id, value_text

OCSF_VERSION = "1.1.0"
CATEGORY_UID = 2  # Findings
CLASS_UID = 2003  # Compliance Finding
ACTIVITY_CREATE = 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_CREATE

_SEVERITY_ID = {Severity.INFO: 1, Severity.LOW: 2, Severity.MEDIUM: 3, Severity.HIGH: 4, Severity.CRITICAL: 5}
# compliance.status_id: 1 Pass, 2 Warning, 3 Fail
_COMPLIANCE = {
    Status.PASS: (1, "Pass"),
    Status.NOT_APPLICABLE: (1, "Pass"),
    Status.ERROR: (2, "Warning"),
    Status.FAIL: (3, "Fail"),
    Status.WAIVED: (3, "Fail"),
}
# finding lifecycle status_id: 1 New, 3 Suppressed, 4 Resolved
_LIFECYCLE = {
    Status.FAIL: (1, "New"),
    Status.ERROR: (1, "New"),
    Status.WAIVED: (3, "Suppressed"),
    Status.PASS: (4, "Resolved"),
    Status.NOT_APPLICABLE: (4, "Resolved"),
}
_STANDARD_NAMES = {
    "soc2": "SOC 2",
    "iso27001": "ISO/IEC 27001:2022",
    "cis-debian12": "CIS Debian Linux 12 Benchmark v1.1.0",
    "cis-docker": "CIS Docker Benchmark v1.6.0",
    "nist-800-53": "NIST SP 800-53 Rev. 5",
}


def _millis(finding: Finding) -> int:
    return int(finding.observed_at.timestamp() * 1000)


def _resource(finding: Finding) -> dict[str, Any]:
    r = finding.resource
    data: dict[str, Any] = {"type": r.kind.value, "name": r.label(), "uid": r.label(), "data": r.to_dict()}
    if r.host:
        data["hostname"] = r.host
    return data


def ocsf_event(finding: Finding, report: Report) -> dict[str, Any]:
    compliance_id, compliance_status = _COMPLIANCE[finding.status]
    lifecycle_id, lifecycle = _LIFECYCLE[finding.status]
    requirements = [f"{kind} {rid}" for kind, ids in sorted(finding.references.items()) for rid in ids]
    standards = [_STANDARD_NAMES[k] for k in sorted(finding.references) if k in _STANDARD_NAMES]
    event: dict[str, Any] = {
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": TYPE_UID,
        "type_name": "Compliance Finding: Create",
        "time": _millis(finding),
        "severity_id": _SEVERITY_ID[finding.severity],
        "severity": finding.severity.value.capitalize() if finding.severity is not Severity.INFO else "Informational",
        "status_id": lifecycle_id,
        "status": lifecycle,
        "message": finding.message or finding.title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "preaudit", "vendor_name": "preaudit", "version": report.tool_version},
            "uid": finding.fingerprint,
            "correlation_uid": report.document.scan.id,
        },
        "finding_info": {
            "uid": finding.fingerprint,
            "title": finding.title,
            "desc": report.controls[finding.control_id].rationale,
            "types": ["Compliance", finding.scanner],
            "created_time": _millis(finding),
            "product_uid": rule_id(finding),
        },
        "compliance": {
            "control": rule_id(finding),
            "requirements": requirements,
            "standards": standards or ["preaudit catalog"],
            "status_id": compliance_id,
            "status": compliance_status,
            "status_detail": (
                f"observed: {value_text(finding.evidence.observed)}; expected: {value_text(finding.evidence.expected)}"
            ),
        },
        "remediation": {"desc": finding.remediation or report.controls[finding.control_id].remediation},
        "resources": [_resource(finding)],
        "unmapped": {"preaudit_status": finding.status.value, "score": finding.score},
    }
    if finding.waiver:
        event["unmapped"]["waiver"] = finding.waiver
    return event


def render_ocsf(report: Report) -> str:
    # Compact: the file is for machines (a SIEM or a data lake), and at 20,000 findings indenting
    # alone makes it a third larger.
    events = [ocsf_event(f, report) for f in report.findings]
    return json.dumps(events, separators=(",", ":"), ensure_ascii=False) + "\n"
