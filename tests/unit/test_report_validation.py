"""The compiled schema check of large exports rejects what the reference validator rejects."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from scanners.errors import PreauditError
from scanners.findings_file import findings_schema
from scanners.report.export_json import findings_document, report_document
from scanners.report.schemas import report_schema
from scanners.report.validation import check_findings_export, check_report_export
from tests.unit.report_fixtures import fleet_report

Mutation = Callable[[dict[str, Any]], None]

FINDINGS_MUTATIONS: list[tuple[str, Mutation]] = [
    ("severity", lambda d: d["findings"][0].update(severity="catastrophic")),
    ("fingerprint", lambda d: d["findings"][1].update(fingerprint="abc")),
    ("extra-key", lambda d: d["findings"][2].update(secret="x")),
    ("waiver-state", lambda d: next(f for f in d["findings"] if "waiver" in f)["waiver"].update(state="forever")),
    ("waiver-date", lambda d: next(f for f in d["findings"] if "waiver" in f)["waiver"].update(expires="soon")),
    ("timestamp", lambda d: d["scan"].update(started_at="yesterday")),
    ("schema-id", lambda d: d.update(schema="preaudit/findings/v0")),
]
REPORT_MUTATIONS: list[tuple[str, Mutation]] = [
    ("score-range", lambda d: d["readiness"]["overall"].update(score=101)),
    ("framework-extra", lambda d: d["readiness"]["frameworks"][0].update(bonus=1)),
    ("requirement-status", lambda d: d["readiness"]["frameworks"][0]["requirements"][0].update(status="great")),
    ("waiver-extra", lambda d: d["waivers"]["active"][0].update(note="x")),
    ("diff-change", lambda d: d["diff"]["changes"][0].update(change="moved")),
    ("period-share", lambda d: d["period"]["requirements"][0].update(share_passed=1.5)),
]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    report, _ = fleet_report(tmp_path_factory.mktemp("validation"))
    # through JSON, as the files are read back
    return json.loads(json.dumps(findings_document(report))), json.loads(json.dumps(report_document(report)))


@pytest.mark.parametrize(("name", "mutate"), FINDINGS_MUTATIONS, ids=[n for n, _ in FINDINGS_MUTATIONS])
def test_findings_check_agrees_with_jsonschema(
    documents: tuple[dict[str, Any], dict[str, Any]], name: str, mutate: Mutation
) -> None:
    check_findings_export(documents[0])
    broken = copy.deepcopy(documents[0])
    mutate(broken)
    reference = jsonschema.Draft202012Validator(findings_schema(), format_checker=jsonschema.FormatChecker())
    assert list(reference.iter_errors(broken)), f"the reference validator accepts mutation {name}"
    with pytest.raises(PreauditError, match=r"internal error: findings\.json export: not a valid findings document"):
        check_findings_export(broken)


@pytest.mark.parametrize(("name", "mutate"), REPORT_MUTATIONS, ids=[n for n, _ in REPORT_MUTATIONS])
def test_report_check_agrees_with_jsonschema(
    documents: tuple[dict[str, Any], dict[str, Any]], name: str, mutate: Mutation
) -> None:
    check_report_export(documents[1])
    broken = copy.deepcopy(documents[1])
    mutate(broken)
    reference = jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker())
    assert list(reference.iter_errors(broken)), f"the reference validator accepts mutation {name}"
    with pytest.raises(PreauditError, match=r"internal error: report\.json does not match its schema at "):
        check_report_export(broken)
