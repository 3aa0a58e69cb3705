"""Requirement lists of the readiness frameworks (SOC 2, ISO 27001, CIS): YAML data, validated on load.

The report needs every requirement of a framework, not only those a finding names: an auditor
must see what this tool did not assess. A requirement marked ``manual`` is one no technical scan
can decide (policies, people, physical security, a benchmark's "Manual" recommendations); the
report lists it as such and never counts it as passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from scanners.catalog import FRAMEWORKS
from scanners.errors import InputError

FRAMEWORKS_DIR = Path(__file__).parent
# The frameworks the report scores, in the order it shows them.
READINESS_FRAMEWORKS = ("soc2", "iso27001", "cis-debian12", "cis-docker")

_FILE_KEYS = frozenset({"framework", "name", "version", "source", "sections"})
_SECTION_KEYS = frozenset({"title", "requirements"})
_REQUIREMENT_KEYS = frozenset({"id", "title", "manual"})


@dataclass(frozen=True, slots=True)
class Requirement:
    framework: str
    id: str
    title: str
    section: str
    manual: bool = False


@dataclass(frozen=True, slots=True)
class Framework:
    key: str
    name: str
    version: str
    source: str
    requirements: tuple[Requirement, ...]

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self.requirements)

    def __len__(self) -> int:
        return len(self.requirements)

    def __contains__(self, requirement_id: object) -> bool:
        return any(r.id == requirement_id for r in self.requirements)

    def get(self, requirement_id: str) -> Requirement | None:
        return next((r for r in self.requirements if r.id == requirement_id), None)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


def _fail(source: str, message: str) -> InputError:
    return InputError(f"framework list {source}: {message}")


def _parse_requirement(source: str, key: str, section: str, raw: Any, seen: set[str]) -> Requirement:
    if not isinstance(raw, dict):
        raise _fail(source, f"section {section!r}: each requirement must be a mapping")
    unknown = set(raw) - _REQUIREMENT_KEYS
    if unknown:
        raise _fail(source, f"section {section!r}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    rid, title, manual = raw.get("id"), raw.get("title"), raw.get("manual", False)
    # A bare 2.10 in YAML is the float 2.1: only strings are trusted as ids.
    if not isinstance(rid, str) or not rid.strip():
        raise _fail(source, f"section {section!r}: requirement id {rid!r} must be a quoted string")
    if rid in seen:
        raise _fail(source, f"duplicate requirement id {rid}")
    if not isinstance(title, str) or not title.strip():
        raise _fail(source, f"requirement {rid}: title must be a non-empty string")
    if not isinstance(manual, bool):
        raise _fail(source, f"requirement {rid}: manual must be true or false")
    seen.add(rid)
    return Requirement(framework=key, id=rid, title=title.strip(), section=section, manual=manual)


def parse_framework(data: Any, source: str) -> Framework:
    if not isinstance(data, dict) or set(data) - _FILE_KEYS or not {"framework", "name", "sections"} <= set(data):
        raise _fail(source, f"expected a mapping with {', '.join(sorted(_FILE_KEYS))}")
    key = data["framework"]
    if key not in FRAMEWORKS:
        raise _fail(source, f"unknown framework {key!r} (known: {', '.join(sorted(FRAMEWORKS))})")
    if not isinstance(data["sections"], list) or not data["sections"]:
        raise _fail(source, "sections must be a non-empty list")
    requirements: list[Requirement] = []
    seen: set[str] = set()
    for section in data["sections"]:
        if not isinstance(section, dict) or set(section) != _SECTION_KEYS or not isinstance(section["title"], str):
            raise _fail(source, "each section must be a mapping with a title and requirements")
        if not isinstance(section["requirements"], list):
            raise _fail(source, f"section {section['title']!r}: requirements must be a list")
        for raw in section["requirements"]:
            requirements.append(_parse_requirement(source, key, section["title"], raw, seen))
    return Framework(
        key=key,
        name=str(data["name"]),
        version=str(data.get("version", "")),
        source=str(data.get("source", "")),
        requirements=tuple(requirements),
    )


def load_frameworks(directory: Path | None = None) -> dict[str, Framework]:
    """Every ``*.yml`` requirement list of the directory, keyed by framework, in report order."""
    directory = directory or FRAMEWORKS_DIR
    found: dict[str, Framework] = {}
    for path in sorted(directory.glob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise _fail(path.name, f"cannot read: {exc.__class__.__name__}") from None
        framework = parse_framework(data, path.name)
        if framework.key in found:
            raise _fail(path.name, f"framework {framework.key} is defined twice")
        found[framework.key] = framework
    missing = [k for k in READINESS_FRAMEWORKS if k not in found]
    if missing:
        raise InputError(f"framework lists missing for {', '.join(missing)} in {directory}")
    order = {k: i for i, k in enumerate(READINESS_FRAMEWORKS)}
    return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))


@cache
def default_frameworks() -> dict[str, Framework]:
    """The requirement lists shipped with the package, loaded once per process."""
    return load_frameworks()
