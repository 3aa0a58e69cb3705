"""The schema of report.json (``scanners/schemas/report.schema.json``)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

REPORT_SCHEMA_ID = "preaudit/report/v1"
REPORT_SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "report.schema.json"


@cache
def report_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(REPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema
