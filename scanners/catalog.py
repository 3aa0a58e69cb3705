"""The control catalog: YAML data shipped in ``scanners/controls``, validated on load.

Every control has a stable id, a severity, references to the frameworks it serves and a
declarative check. The roles tag their tasks with the ids, the host audit module evaluates the
host checks, the testinfra suites verify the same expectations and the report maps findings to
frameworks, all from this one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from scanners.errors import InputError
from scanners.findings import Evidence, Finding, Resource, Severity, Status

CATALOG_VERSION = "2026.11"
CONTROLS_DIR = Path(__file__).with_name("controls")

FRAMEWORKS: dict[str, str] = {
    "soc2": "SOC 2 Trust Services Criteria (2017, rev. 2022)",
    "iso27001": "ISO/IEC 27001:2022 Annex A",
    "cis-debian12": "CIS Debian Linux 12 Benchmark v1.1.0",
    "cis-docker": "CIS Docker Benchmark v1.6.0",
    "nist-800-53": "NIST SP 800-53 Rev. 5",
}
# Other reference kinds a finding may carry that are not readiness frameworks.
EXTRA_REFERENCE_KINDS = frozenset({"mozilla-tls", "cwe", "cve", "owasp"})
# Every control must serve both audit frameworks this project exists for.
REQUIRED_REFERENCES = ("soc2", "iso27001")

CONTROL_KEYS_REQUIRED = frozenset({"id", "title", "severity", "rationale", "remediation", "references", "check"})
CONTROL_KEYS_OPTIONAL = frozenset({"role", "role_mode", "level", "container", "notes"})
ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z][A-Z0-9]*)*-[0-9]{3}$")
ROLES = frozenset({"os_hardening", "ssh_hardening", "tls_hardening", "secrets_hardening", "container_hardening"})
# How a control behaves on a container host (systemd-nspawn, Docker, LXC) where the kernel or a
# service cannot be changed from inside: "applies" (default), "persist_only" (configuration is
# written but the runtime state belongs to the host kernel), "not_applicable".
CONTAINER_BEHAVIOURS = frozenset({"applies", "persist_only", "not_applicable"})
# What the role named by a control does about it: remediates it in every run (default), only
# reports what a person must decide (e.g. members of the docker group), or applies it when a
# variable asks for it (opt_in, e.g. user namespace remapping).
ROLE_MODES = frozenset({"remediates", "reports", "opt_in"})

# What a host check's ``paths_from`` may name: the lists of the host's discovery result
# (module_utils/preaudit_discovery.py CATEGORIES; a unit test keeps the two identical).
DISCOVERY_LISTS = frozenset(
    f"discovery.{name}"
    for name in (
        "env_files",
        "compose_files",
        "dockerfiles",
        "requirements",
        "python_sources",
        "private_keys",
        "certificates",
        "other_files",
    )
)

OPS = frozenset(
    {"equals", "not_equals", "in", "not_in", "min", "max", "range", "subset", "excludes", "includes", "regex"}
)


@dataclass(frozen=True, slots=True)
class CheckType:
    """A kind of declarative check and who evaluates it.

    Host checks are strict about their parameters (the target-side module must understand
    each); checks evaluated by a controller-side scanner accept extra parameters of its own.
    """

    evaluator: str
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    # Parameters of which exactly one must be given (a fixed path, or the files discovery found).
    one_of: frozenset[str] = frozenset()

    @property
    def open_params(self) -> bool:
        return self.evaluator != "host"


def _ct(evaluator: str, required: Iterable[str], optional: Iterable[str] = (), one_of: Iterable[str] = ()) -> CheckType:
    return CheckType(evaluator, frozenset(required), frozenset(optional) | frozenset(one_of), frozenset(one_of))


# Host checks are evaluated on the target by library/host_audit.py (one call per host); a unit
# test keeps this table and the module's evaluators identical. The others are evaluated by the
# scanner named in ``evaluator``.
CHECK_TYPES: dict[str, CheckType] = {
    "sshd_config": _ct("host", {"key", "op", "value"}),
    "sshd_host_keys": _ct("host", {"min_rsa_bits", "allowed_types"}),
    "sshd_moduli": _ct("host", {"min_bits"}),
    "sysctl": _ct("host", {"values"}, {"exempt_if_active"}),
    "file_mode": _ct("host", {"path", "mode"}, {"owner", "group", "missing_ok"}),
    "file_content": _ct("host", {"path", "pattern", "present"}, {"missing_ok"}),
    "package": _ct("host", {"name", "state"}),
    "service": _ct("host", {"names", "state"}),
    "kernel_module": _ct("host", {"name"}),
    "mount_option": _ct("host", {"mount", "options"}),
    "login_defs": _ct("host", {"key", "op", "value"}),
    "accounts": _ct("host", {"rule"}, {"value", "exempt"}),
    "world_writable": _ct("host", {"paths", "rule"}),
    "suid_sgid": _ct("host", {"paths", "allowlist"}),
    "unowned_files": _ct("host", {"paths"}),
    "auditd_rule": _ct("host", {"keys"}),
    "nftables": _ct("host", {"rule"}),
    "secret_files": _ct(
        "host", {"paths", "patterns", "mode"}, {"owner", "group", "exclude", "contains", "max_depth", "paths_from"}
    ),
    "env_secret_strength": _ct(
        "host", {"keys"}, {"min_length", "denylist", "missing_ok"}, one_of={"path", "paths_from"}
    ),
    "tls": _ct("tls", {"property"}, {"value"}),
    "secret": _ct("secrets", set(), {"kinds"}),
    "code": _ct("code", set(), {"min_severity"}),
    "dependency": _ct("dependencies", set()),
    "dockerfile": _ct("containers", {"rule"}),
    "compose": _ct("containers", {"rule"}),
    "docker_daemon": _ct("containers", {"rule"}),
    "container_runtime": _ct("containers", {"rule"}),
    "scan": _ct("pipeline", set()),
    "manual": _ct("manual", {"procedure"}),
}


@dataclass(frozen=True, slots=True)
class Control:
    id: str
    title: str
    severity: Severity
    rationale: str
    remediation: str
    references: Mapping[str, tuple[str, ...]]
    check: Mapping[str, Any]
    area: str
    source: str
    role: str | None = None
    role_mode: str = "remediates"
    level: int = 1
    container: str = "applies"
    notes: str = ""

    @property
    def check_type(self) -> str:
        return str(self.check["type"])

    @property
    def evaluator(self) -> str:
        return CHECK_TYPES[self.check_type].evaluator

    def references_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.references.items()}

    def finding(
        self,
        status: Status,
        resource: Resource,
        scanner: str,
        *,
        evidence: Evidence | None = None,
        message: str = "",
        rule: str | None = None,
        title: str | None = None,
        severity: Severity | None = None,
        score: float | None = None,
        discriminator: str = "",
        extra_references: Mapping[str, Iterable[str]] | None = None,
        remediation: str | None = None,
    ) -> Finding:
        """A finding of this control; a scanner may refine title, severity and references per hit."""
        references = self.references_dict()
        for kind, ids in (extra_references or {}).items():
            references.setdefault(kind, [])
            references[kind] += [i for i in ids if i not in references[kind]]
        return Finding(
            control_id=self.id,
            title=title or self.title,
            severity=severity or self.severity,
            status=status,
            resource=resource,
            scanner=scanner,
            evidence=evidence or Evidence(),
            remediation=remediation if remediation is not None else self.remediation,
            references=references,
            message=message,
            rule=rule,
            discriminator=discriminator,
            score=score,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.value,
            "rationale": self.rationale,
            "remediation": self.remediation,
            "references": self.references_dict(),
            "check": dict(self.check),
            "area": self.area,
            "role": self.role,
            "role_mode": self.role_mode,
            "level": self.level,
            "container": self.container,
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    controls: Mapping[str, Control]
    version: str = CATALOG_VERSION
    digest: str = ""

    def __iter__(self) -> Iterator[Control]:
        return iter(self.controls.values())

    def __len__(self) -> int:
        return len(self.controls)

    def __contains__(self, control_id: object) -> bool:
        return control_id in self.controls

    def get(self, control_id: str) -> Control:
        try:
            return self.controls[control_id]
        except KeyError:
            raise InputError(f"unknown control id {control_id!r}") from None

    def by_evaluator(self, evaluator: str) -> list[Control]:
        return [c for c in self if c.evaluator == evaluator]

    def by_role(self, role: str) -> list[Control]:
        return [c for c in self if c.role == role]

    def remediated_by(self, roles: Iterable[str]) -> set[str]:
        """Ids of the controls a run of these roles fixes by default (not report-only, not opt-in)."""
        names = set(roles)
        return {c.id for c in self if c.role in names and c.role_mode == "remediates"}

    def host_checks(self) -> list[dict[str, Any]]:
        """The payload the host audit module receives: id, check and container behaviour."""
        return [{"id": c.id, "check": dict(c.check), "container": c.container} for c in self.by_evaluator("host")]

    def metadata(self) -> dict[str, Any]:
        return {"version": self.version, "digest": self.digest, "controls": len(self)}


def _fail(source: str, control_id: str | None, message: str) -> InputError:
    where = f"{source}: control {control_id}" if control_id else source
    return InputError(f"catalog {where}: {message}")


def _validate_references(source: str, cid: str, refs: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(refs, dict) or not refs:
        raise _fail(source, cid, "references must be a non-empty mapping of framework to ids")
    known = set(FRAMEWORKS) | EXTRA_REFERENCE_KINDS
    result: dict[str, tuple[str, ...]] = {}
    for framework, ids in refs.items():
        if framework not in known:
            raise _fail(
                source, cid, f"unknown framework {framework!r} in references (known: {', '.join(sorted(known))})"
            )
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str | int | float) for i in ids):
            raise _fail(source, cid, f"references.{framework} must be a non-empty list of ids")
        result[framework] = tuple(str(i) for i in ids)
    missing = [f for f in REQUIRED_REFERENCES if f not in result]
    if missing:
        raise _fail(source, cid, f"missing references for {', '.join(missing)}")
    return result


# Parameters every host check type takes: applies_if_any (absolute paths) makes the check
# not_applicable on a host where none of them exists (what it audits is not installed there).
COMMON_CHECK_PARAMS = frozenset({"applies_if_any"})


def _validate_check(source: str, cid: str, check: Any) -> dict[str, Any]:
    if not isinstance(check, dict) or "type" not in check:
        raise _fail(source, cid, "check must be a mapping with a 'type'")
    ctype = check["type"]
    spec = CHECK_TYPES.get(ctype)
    if spec is None:
        raise _fail(source, cid, f"unknown check type {ctype!r} (known: {', '.join(sorted(CHECK_TYPES))})")
    params = set(check) - {"type"} - COMMON_CHECK_PARAMS
    needs = check.get("applies_if_any")
    if needs is not None and (
        not isinstance(needs, list) or not all(isinstance(p, str) and p.startswith("/") for p in needs)
    ):
        raise _fail(source, cid, "applies_if_any must be a list of absolute paths")
    missing = spec.required - params
    if missing:
        raise _fail(source, cid, f"check {ctype} is missing {', '.join(sorted(missing))}")
    unknown = params - spec.required - spec.optional
    if unknown and not spec.open_params:
        raise _fail(source, cid, f"check {ctype} has unknown parameter(s) {', '.join(sorted(unknown))}")
    if "op" in check and check["op"] not in OPS:
        raise _fail(source, cid, f"unknown op {check['op']!r} (known: {', '.join(sorted(OPS))})")
    if spec.one_of and len(spec.one_of & params) != 1:
        raise _fail(source, cid, f"check {ctype} needs exactly one of {', '.join(sorted(spec.one_of))}")
    if "paths_from" in check and check["paths_from"] not in DISCOVERY_LISTS:
        known = ", ".join(sorted(DISCOVERY_LISTS))
        raise _fail(source, cid, f"paths_from {check['paths_from']!r} is not a discovery list (known: {known})")
    return dict(check)


def _parse_control(source: str, area: str, raw: Any) -> Control:
    if not isinstance(raw, dict):
        raise _fail(source, None, "each entry of 'controls' must be a mapping")
    cid = raw.get("id")
    if not isinstance(cid, str) or not ID_PATTERN.match(cid):
        raise _fail(source, None, f"invalid or missing control id {cid!r} (expected e.g. SSH-001)")
    unknown = set(raw) - CONTROL_KEYS_REQUIRED - CONTROL_KEYS_OPTIONAL
    if unknown:
        raise _fail(source, cid, f"unknown key(s) {', '.join(sorted(unknown))}")
    missing = CONTROL_KEYS_REQUIRED - set(raw)
    if missing:
        raise _fail(source, cid, f"missing key(s) {', '.join(sorted(missing))}")
    for key in ("title", "rationale", "remediation"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _fail(source, cid, f"{key} must be a non-empty string")
    try:
        severity = Severity.parse(str(raw["severity"]))
    except ValueError as exc:
        raise _fail(source, cid, str(exc)) from None
    role = raw.get("role")
    if role is not None and role not in ROLES:
        raise _fail(source, cid, f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})")
    level = raw.get("level", 1)
    if level not in (1, 2):
        raise _fail(source, cid, f"level must be 1 or 2, not {level!r}")
    role_mode = raw.get("role_mode", "remediates")
    if role_mode not in ROLE_MODES or (role is None and "role_mode" in raw):
        raise _fail(source, cid, f"role_mode must be one of {', '.join(sorted(ROLE_MODES))}, with a role")
    container = raw.get("container", "applies")
    if container not in CONTAINER_BEHAVIOURS:
        raise _fail(source, cid, f"container must be one of {', '.join(sorted(CONTAINER_BEHAVIOURS))}")
    return Control(
        id=cid,
        title=raw["title"].strip(),
        severity=severity,
        rationale=raw["rationale"].strip(),
        remediation=raw["remediation"].strip(),
        references=_validate_references(source, cid, raw["references"]),
        check=_validate_check(source, cid, raw["check"]),
        area=area,
        source=source,
        role=role,
        role_mode=role_mode,
        level=level,
        container=container,
        notes=str(raw.get("notes", "")).strip(),
    )


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"catalog {path.name}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"catalog {path.name}: invalid YAML{where}") from None


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and validate every ``*.yml`` file of the catalog directory."""
    directory = directory or CONTROLS_DIR
    if not directory.is_dir():
        raise InputError(f"catalog directory {directory} does not exist")
    controls: dict[str, Control] = {}
    for path in sorted(directory.glob("*.yml")):
        data = _read_yaml(path)
        source = path.name
        if not isinstance(data, dict) or set(data) - {"area", "controls"} or "controls" not in data:
            raise InputError(f"catalog {source}: expected a mapping with 'area' and 'controls' only")
        area = str(data.get("area") or path.stem)
        if not isinstance(data["controls"], list):
            raise InputError(f"catalog {source}: 'controls' must be a list")
        for raw in data["controls"]:
            control = _parse_control(source, area, raw)
            if control.id in controls:
                raise _fail(source, control.id, f"duplicate id (also defined in {controls[control.id].source})")
            controls[control.id] = control
    if not controls:
        raise InputError(f"catalog directory {directory} holds no controls")
    canonical = json.dumps([c.to_dict() for c in controls.values()], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return Catalog(controls=controls, digest=digest)


@cache
def default_catalog() -> Catalog:
    """The catalog in use, loaded once per process: the shipped one, or the directory named by
    $PREAUDIT_CATALOG_DIR (a company's own catalog, validated the same way)."""
    override = os.environ.get("PREAUDIT_CATALOG_DIR")
    return load_catalog(Path(override) if override else None)
