"""Small text helpers every export shares, so that a finding reads the same in each format."""

from __future__ import annotations

import json
from typing import Any

from scanners.findings import Finding
from scanners.frameworks import READINESS_FRAMEWORKS

NO_HOST = "(no host)"


def value_text(value: Any) -> str:
    """Evidence values as text: scalars as they are, lists and mappings as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def host_of(finding: Finding) -> str:
    return finding.resource.host or NO_HOST


def source_of(finding: Finding) -> str:
    """Where host discovery found the finding's file (``evidence.details.source``), or ""."""
    source = finding.evidence.details.get("source")
    return source if isinstance(source, str) else ""


def frameworks_of(finding: Finding) -> list[str]:
    """The readiness frameworks a finding counts towards."""
    return [k for k in READINESS_FRAMEWORKS if finding.references.get(k)]


def references_text(finding: Finding) -> str:
    return "; ".join(f"{kind} {', '.join(ids)}" for kind, ids in sorted(finding.references.items()) if ids)


def rule_id(finding: Finding) -> str:
    """The stable rule id of exports: the control, or CONTROL/RULE for a scanner's sub-rule."""
    return f"{finding.control_id}/{finding.rule}" if finding.rule else finding.control_id
