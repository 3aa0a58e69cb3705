"""A run restricted with --tags or --skip never reads a result registered by a task it did not run.

Ansible runs a task when one of its tags is selected (or it is tagged always) and none is
skipped; a task that did not run leaves its `register` variable undefined, and a later task that
reads it unguarded fails the whole run ("'_x' is undefined"). This walks the roles' task files
with Ansible's tag inheritance (blocks and imports pass their tags down; a dynamic include passes
its `apply` tags, not its own) and reports every such read that a tag selection or a skip can break.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE_ROLES = ("os_hardening", "ssh_hardening", "tls_hardening", "secrets_hardening", "container_hardening")
IMPORTS = ("ansible.builtin.import_tasks", "import_tasks")
INCLUDES = ("ansible.builtin.include_tasks", "include_tasks")
ALWAYS = "always"
# A read is safe when it has a fallback: `x | default(...)`, `x.attr | default(...)`, `x is defined`.
GUARDED = re.compile(r"(\.\w+|\[[^\]]*\])*\s*\|\s*default\b|\s+is\s+(not\s+)?defined\b")
TEMPLATE_LOOKUP = re.compile(r"lookup\(\\?['\"]ansible\.builtin\.template\\?['\"],\s*\\?['\"]([\w.\-]+)")


@dataclass(frozen=True)
class Task:
    role: str
    file: str
    name: str
    tags: frozenset[str]
    body: dict[str, Any]


def _tags(entry: dict[str, Any]) -> set[str]:
    tags = entry.get("tags", [])
    return {tags} if isinstance(tags, str) else set(tags)


def role_tasks(
    roles_dir: Path, role: str, file: str = "main.yml", inherited: frozenset[str] | None = None
) -> Iterator[Task]:
    inherited = frozenset({role}) if inherited is None else inherited
    for entry in yaml.safe_load((roles_dir / role / "tasks" / file).read_text()) or []:
        yield from _walk(roles_dir, role, file, entry, inherited)


def _walk(roles_dir: Path, role: str, file: str, entry: dict[str, Any], inherited: frozenset[str]) -> Iterator[Task]:
    tags = inherited | _tags(entry)
    if "block" in entry:
        for section in ("block", "rescue", "always"):
            for sub in entry.get(section) or []:
                yield from _walk(roles_dir, role, file, sub, tags)
        return
    for key in IMPORTS:
        if key in entry:
            target = entry[key] if isinstance(entry[key], str) else entry[key]["file"]
            yield from role_tasks(roles_dir, role, target, tags)
            return
    for key in INCLUDES:
        if key in entry:
            spec = entry[key] if isinstance(entry[key], dict) else {"file": entry[key]}
            applied = frozenset(spec.get("apply", {}).get("tags", []))
            yield from role_tasks(roles_dir, role, spec["file"], inherited | applied)
    yield Task(role, file, str(entry.get("name", "")), tags, entry)


def role_variables(roles_dir: Path, roles: tuple[str, ...]) -> dict[str, Any]:
    """Defaults and vars: Ansible evaluates them lazily, so a read inside one happens where it is used."""
    found: dict[str, Any] = {}
    for role in roles:
        for kind in ("defaults", "vars"):
            path = roles_dir / role / kind / "main.yml"
            if path.exists():
                found.update(yaml.safe_load(path.read_text()) or {})
    return found


def task_text(roles_dir: Path, roles: tuple[str, ...], task: Task, variables: dict[str, Any]) -> str:
    body = {k: v for k, v in task.body.items() if k not in ("name", "register")}
    text = json.dumps(body)
    for template in TEMPLATE_LOOKUP.findall(text):
        for role in roles:
            path = roles_dir / role / "templates" / template
            if path.exists():
                text += path.read_text()
    return _with_variables(text, variables, frozenset())


def _with_variables(text: str, variables: dict[str, Any], seen: frozenset[str]) -> str:
    out = text
    for name, value in variables.items():
        if name not in seen and re.search(rf"\b{re.escape(name)}\b", text):
            out += _with_variables(json.dumps(value), variables, seen | {name})
    return out


def unguarded_reads(text: str, name: str) -> bool:
    return any(not GUARDED.match(text, match.end()) for match in re.finditer(rf"\b{re.escape(name)}\b", text))


def tag_breakable_reads(roles_dir: Path, roles: tuple[str, ...]) -> list[str]:
    tasks = [task for role in roles for task in role_tasks(roles_dir, role)]
    registered: dict[str, list[Task]] = {}
    for task in tasks:
        if "register" in task.body:
            registered.setdefault(task.body["register"], []).append(task)
    variables = role_variables(roles_dir, roles)
    problems = []
    for task in tasks:
        text = task_text(roles_dir, roles, task, variables)
        for name, producers in registered.items():
            if task in producers or not unguarded_reads(text, name):
                continue
            for producer in producers:
                selected_without = ALWAYS not in producer.tags and (
                    ALWAYS in task.tags or not (task.tags - {ALWAYS}) <= producer.tags
                )
                skipped_without = bool((producer.tags - {ALWAYS}) - task.tags)
                if selected_without or skipped_without:
                    how = "--tags" if selected_without else "--skip"
                    problems.append(
                        f"{task.role}/{task.file}: {task.name!r} reads {name} unguarded, which {how} can leave "
                        f"undefined (its tags {sorted(task.tags)}, the register's {sorted(producer.tags)})"
                    )
    return problems


def test_no_tag_selection_leaves_a_read_result_undefined() -> None:
    problems = tag_breakable_reads(ROOT / "roles", (*SITE_ROLES, "change_guard"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("reader_tags", "guard", "expected"),
    [
        ("[always]", "", "--tags"),  # the CI failure: the reload read the links of a skipped task
        ("[X-1, X-2]", "", "--tags"),
        ("[X-2]", "", "--tags"),
        ("[X-1]", "", ""),
        ("[always]", " | default({})", ""),
    ],
)
def test_the_check_finds_a_read_that_a_tag_selection_breaks(
    tmp_path: Path, reader_tags: str, guard: str, expected: str
) -> None:
    tasks = tmp_path / "demo" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(
        "- name: Produce\n  ansible.builtin.command: 'true'\n  register: _demo_out\n  tags: [X-1]\n"
        "- name: Read\n  ansible.builtin.debug:\n    msg: x\n"
        f"  when: _demo_out{guard} is changed\n  tags: {reader_tags}\n"
    )
    problems = tag_breakable_reads(tmp_path, ("demo",))
    if expected:
        assert len(problems) == 1 and expected in problems[0] and "_demo_out" in problems[0]
    else:
        assert problems == []


def test_a_dynamic_include_passes_its_apply_tags_not_its_own(tmp_path: Path) -> None:
    tasks = tmp_path / "demo" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(
        "- name: Include\n  ansible.builtin.include_tasks:\n    file: inner.yml\n    apply:\n      tags: [X-2]\n"
        "  tags: [X-1]\n"
    )
    (tasks / "inner.yml").write_text("- name: Inner\n  ansible.builtin.debug:\n    msg: x\n")
    inner = next(t for t in role_tasks(tmp_path, "demo") if t.name == "Inner")
    assert inner.tags == frozenset({"demo", "X-2"})
