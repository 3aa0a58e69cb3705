"""Validating large export documents against their schema, fast.

jsonschema needs about 6 s for a document of 20,000 findings; a schema compiled by fastjsonschema
checks the same document in a fraction of a second. The compiled check is the gate; when it
fails, jsonschema (the reference implementation) names the violation, so the message is the
same one ``findings_file.validate_document`` gives.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema
import jsonschema

from scanners.errors import PreauditError
from scanners.findings_file import findings_schema, validate_document
from scanners.report.schemas import report_schema

Check = Callable[[Any], Any]


@cache
def _compiled(name: str) -> Check:
    schema = findings_schema() if name == "findings" else report_schema()
    check: Check = fastjsonschema.compile(schema, formats={"date": r"^\d{4}-\d{2}-\d{2}$"})
    return check


def _passes(name: str, data: Any) -> bool:
    try:
        _compiled(name)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def check_findings_export(data: Any) -> None:
    """Raise PreauditError when an exported findings document breaks the findings schema."""
    if _passes("findings", data):
        return
    try:
        validate_document(data, "findings.json export")
    except PreauditError as exc:
        raise PreauditError(f"internal error: {exc}") from None
    raise PreauditError("internal error: findings.json export fails its schema")


def check_report_export(data: Any) -> None:
    """Raise PreauditError when report.json breaks ``scanners/schemas/report.schema.json``."""
    if _passes("report", data):
        return
    validator = jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    where = "/".join(str(p) for p in error.absolute_path) if error is not None else ""
    message = error.message if error is not None else "rejected by the compiled schema"
    raise PreauditError(f"internal error: report.json does not match its schema at {where or '(document)'}: {message}")
