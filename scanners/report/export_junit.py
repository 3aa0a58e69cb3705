"""JUnit XML: one test case per control and resource, so CI dashboards show hardening like tests.

One ``testsuite`` per control area (the control id prefix, e.g. SSH), ``classname`` the control
(or CONTROL/RULE), ``name`` the resource. ``fail`` is a failure, ``error`` an error, ``waived``
and ``not_applicable`` are skipped with the reason (a waiver's justification and expiry).
Scanned text can hold characters XML 1.0 forbids (terminal escapes, NUL): they are replaced,
because one such byte makes the whole file unreadable to a CI server.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from scanners.findings import Finding, Status, format_timestamp
from scanners.report.model import Report
from scanners.report.text import rule_id, value_text

_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    return _XML_FORBIDDEN.sub("\ufffd", text)


def _area(finding: Finding) -> str:
    return finding.control_id.rsplit("-", 1)[0]


def _details(finding: Finding) -> str:
    lines = [
        f"control: {finding.control_id} {finding.title}",
        f"resource: {finding.resource.label()}",
        f"severity: {finding.severity.value} ({finding.score})",
    ]
    if finding.message:
        lines.append(f"message: {finding.message}")
    lines += [
        f"observed: {value_text(finding.evidence.observed)}",
        f"expected: {value_text(finding.evidence.expected)}",
        f"remediation: {finding.remediation}",
        f"fingerprint: {finding.fingerprint}",
    ]
    if finding.waiver:
        w = finding.waiver
        lines.append(f"waiver ({w['state']}): {w['justification']} - {w['approver']}, expires {w['expires']}")
    return xml_text("\n".join(lines))


def _testcase(suite: ET.Element, finding: Finding) -> str | None:
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": xml_text(rule_id(finding)),
            "name": xml_text(finding.resource.label()),
            "time": "0",
            "file": xml_text(finding.resource.path or ""),
        },
    )
    summary = xml_text(f"{finding.severity.value}: {finding.message or finding.title}")
    if finding.status is Status.FAIL:
        ET.SubElement(case, "failure", {"message": summary, "type": finding.severity.value}).text = _details(finding)
        return "failures"
    if finding.status is Status.ERROR:
        ET.SubElement(case, "error", {"message": summary, "type": "assessment-error"}).text = _details(finding)
        return "errors"
    if finding.status is Status.WAIVED:
        w = finding.waiver or {}
        reason = f"waived until {w.get('expires', '?')}: {w.get('justification', '')} ({w.get('approver', '')})"
        ET.SubElement(case, "skipped", {"message": xml_text(reason)})
        return "skipped"
    if finding.status is Status.NOT_APPLICABLE:
        ET.SubElement(case, "skipped", {"message": "not applicable"})
        return "skipped"
    ET.SubElement(case, "system-out").text = _details(finding)
    return None


def render_junit(report: Report) -> str:
    by_area: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        by_area[_area(finding)].append(finding)
    timestamp = format_timestamp(report.document.scan.started_at).removesuffix("Z")
    root = ET.Element("testsuites", {"name": f"preaudit scan {report.document.scan.id}"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for area in sorted(by_area):
        findings = sorted(by_area[area], key=lambda f: (f.control_id, f.rule or "", f.resource.label()))
        suite = ET.SubElement(root, "testsuite", {"name": xml_text(area), "timestamp": timestamp, "time": "0"})
        counts = {"tests": len(findings), "failures": 0, "errors": 0, "skipped": 0}
        for finding in findings:
            outcome = _testcase(suite, finding)
            if outcome:
                counts[outcome] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
