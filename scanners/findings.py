"""The findings model shared by every scanner and every export.

A finding says what was checked (control and optional sub-rule), where (resource), what was
seen against what was expected (evidence), how bad it is and how to fix it. Its fingerprint is
computed from content only, so the same problem keeps the same fingerprint across scans even
when line numbers or timestamps change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

FINGERPRINT_VERSION = "v1"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used for thresholds such as --fail-on."""
        return _SEVERITY_RANK[self]

    @property
    def default_score(self) -> float:
        """A CVSS-like 0-10 score for findings whose source gives none."""
        return _DEFAULT_SCORE[self]

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls(value.strip().lower())
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of: {choices})") from None


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}
# The lower bound of each CVSS v3 qualitative band, nudged up so that sorting by score and by
# severity agree.
_DEFAULT_SCORE = {
    Severity.INFO: 0.0,
    Severity.LOW: 3.0,
    Severity.MEDIUM: 5.5,
    Severity.HIGH: 8.0,
    Severity.CRITICAL: 9.5,
}


class Status(StrEnum):
    FAIL = "fail"
    PASS = "pass"  # noqa: S105 - a status, not a password
    ERROR = "error"
    WAIVED = "waived"
    NOT_APPLICABLE = "not_applicable"


class ResourceKind(StrEnum):
    HOST = "host"
    FILE = "file"
    ENDPOINT = "endpoint"
    IMAGE = "image"
    CONTAINER = "container"
    PACKAGE = "package"
    SCANNER = "scanner"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a finding applies. Only the fields that make sense for the kind are set."""

    kind: ResourceKind
    host: str | None = None
    path: str | None = None
    line: int | None = None
    endpoint: str | None = None
    image: str | None = None
    container: str | None = None
    package: str | None = None
    version: str | None = None

    def identity(self) -> dict[str, Any]:
        """The parts of the resource that identify it; the line number moves and is left out."""
        data = self.to_dict()
        data.pop("line", None)
        return data

    def label(self) -> str:
        """A short human-readable name, e.g. ``sim-1:/etc/ssh/sshd_config:12``."""
        parts: list[str] = []
        if self.host:
            parts.append(self.host)
        if self.endpoint:
            parts.append(self.endpoint)
        if self.container:
            parts.append(f"container {self.container}")
        if self.image:
            parts.append(f"image {self.image}")
        if self.path:
            parts.append(self.path if self.line is None else f"{self.path}:{self.line}")
        if self.package:
            parts.append(f"{self.package}=={self.version}" if self.version else self.package)
        return ":".join(parts) if parts else self.kind.value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value}
        for name in ("host", "path", "line", "endpoint", "image", "container", "package", "version"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resource:
        return cls(
            kind=ResourceKind(data["kind"]),
            host=data.get("host"),
            path=data.get("path"),
            line=data.get("line"),
            endpoint=data.get("endpoint"),
            image=data.get("image"),
            container=data.get("container"),
            package=data.get("package"),
            version=data.get("version"),
        )


@dataclass(slots=True)
class Evidence:
    """What was observed against what was expected, plus any raw detail worth keeping."""

    observed: Any = None
    expected: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"observed": self.observed, "expected": self.expected, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            observed=data.get("observed"),
            expected=data.get("expected"),
            details=dict(data.get("details") or {}),
        )


def compute_fingerprint(control_id: str, rule: str | None, resource: Resource, discriminator: str) -> str:
    """A stable id from content: control, sub-rule, resource identity and a content key."""
    payload = json.dumps(
        [FINGERPRINT_VERSION, control_id, rule or "", resource.identity(), discriminator],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def precise_utcnow() -> datetime:
    """With microseconds: two scans started in the same second must still be ordered."""
    return datetime.now(UTC)


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Finding:
    """One result of one check on one resource."""

    control_id: str
    title: str
    severity: Severity
    status: Status
    resource: Resource
    scanner: str
    evidence: Evidence = field(default_factory=Evidence)
    remediation: str = ""
    references: dict[str, list[str]] = field(default_factory=dict)
    message: str = ""
    rule: str | None = None
    # A content key that separates findings of one control on one resource (for example the
    # normalised code line of a bandit hit or the salted hash of a secret). Never a line number.
    discriminator: str = ""
    score: float | None = None
    fingerprint: str = ""
    observed_at: datetime = field(default_factory=utcnow)
    waiver: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = self.severity.default_score
        if not 0.0 <= self.score <= 10.0:
            raise ValueError(f"score {self.score} of {self.control_id} is outside 0-10")
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self.control_id, self.rule, self.resource, self.discriminator)

    @property
    def is_problem(self) -> bool:
        """True for what an auditor must look at: failures and errors."""
        return self.status in (Status.FAIL, Status.ERROR)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "control_id": self.control_id,
            "rule": self.rule,
            "title": self.title,
            "severity": self.severity.value,
            "score": self.score,
            "status": self.status.value,
            "resource": self.resource.to_dict(),
            "scanner": self.scanner,
            "message": self.message,
            "evidence": self.evidence.to_dict(),
            "remediation": self.remediation,
            "references": {k: list(v) for k, v in sorted(self.references.items())},
            "observed_at": format_timestamp(self.observed_at),
        }
        if self.discriminator:
            data["discriminator"] = self.discriminator
        if self.waiver is not None:
            data["waiver"] = self.waiver
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            control_id=data["control_id"],
            rule=data.get("rule"),
            title=data["title"],
            severity=Severity(data["severity"]),
            score=data.get("score"),
            status=Status(data["status"]),
            resource=Resource.from_dict(data["resource"]),
            scanner=data["scanner"],
            message=data.get("message", ""),
            evidence=Evidence.from_dict(data.get("evidence") or {}),
            remediation=data.get("remediation", ""),
            references={k: list(v) for k, v in (data.get("references") or {}).items()},
            discriminator=data.get("discriminator", ""),
            fingerprint=data.get("fingerprint", ""),
            observed_at=parse_timestamp(data["observed_at"]),
            waiver=data.get("waiver"),
        )
