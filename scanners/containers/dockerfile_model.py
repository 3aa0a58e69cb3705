"""A Dockerfile as build stages, parsed with dockerfile-parse.

dockerfile-parse does the instruction splitting (line continuations, comments inside them, the
escape directive). On top of it this module groups instructions into stages, follows
``FROM <earlier stage>`` references and expands build variables the way the builder does,
including the ``${VAR:-default}`` and ``${VAR:+alternative}`` forms the library leaves alone.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]
from dockerfile_parse.parser import image_from  # type: ignore[import-untyped]
from dockerfile_parse.util import WordSplitter  # type: ignore[import-untyped]


class DockerfileError(ValueError):
    """The file cannot be read as a Dockerfile."""


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    value: str
    line: int  # 1-based line of the instruction's first line


@dataclass(slots=True)
class Stage:
    index: int
    name: str | None
    base: str  # FROM image as written
    base_expanded: str  # after build-argument expansion
    unresolved: tuple[str, ...]  # build arguments in the FROM image that have no value
    line: int
    parent: int | None  # index of the earlier stage this one is built FROM, if any
    instructions: list[Instruction] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # ARG defaults and ENV of this stage


@dataclass(frozen=True, slots=True)
class Dockerfile:
    global_args: list[Instruction]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def lineage(self) -> list[Stage]:
        """The final stage and the stages it is built FROM, final first: what ends up in the image."""
        chain: list[Stage] = []
        stage: Stage | None = self.final
        while stage is not None and stage not in chain:
            chain.append(stage)
            stage = self.stages[stage.parent] if stage.parent is not None else None
        return chain

    def stage_of(self, instruction: Instruction) -> Stage:
        return next(s for s in self.stages if instruction in s.instructions)

    def all_instructions(self) -> list[Instruction]:
        return [*self.global_args, *(i for s in self.stages for i in s.instructions)]


_VARIABLE = re.compile(
    r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\+)(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand(text: str, variables: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand $VAR, ${VAR}, ${VAR:-word} and ${VAR:+word}; returns the text and the unset names."""
    unresolved: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("bare")
        value = variables.get(name)
        op = match.group("op")
        if op == ":-":
            return value if value else match.group("word")
        if op == ":+":
            return match.group("word") if value else ""
        if value is None:
            unresolved.append(name)
            return ""
        return value

    return _VARIABLE.sub(replace, text), unresolved


def words(value: str) -> list[str]:
    """Shell-like words of an instruction's arguments, quotes removed; JSON (exec) form is read as JSON."""
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                return list(parsed)
    return [str(w) for w in WordSplitter(value).split(dequote=True)]


def key_values(keyword: str, value: str) -> list[tuple[str, str | None]]:
    """The variables an ARG or ENV instruction declares; an ARG without a default has value None."""
    parts = words(value)
    if keyword == "ENV" and parts and "=" not in parts[0]:
        # Legacy form: `ENV NAME value with spaces`.
        return [(parts[0], " ".join(parts[1:]))]
    pairs: list[tuple[str, str | None]] = []
    for part in parts:
        name, sep, default = part.partition("=")
        pairs.append((name, default if sep else None))
    return pairs


def parse_dockerfile(text: str) -> Dockerfile:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    try:
        structure = parser.structure
    except Exception as exc:  # the library raises bare ValueErrors and friends on odd input
        # The exception text can quote the file, and a Dockerfile can hold a secret: name the type only.
        raise DockerfileError(f"cannot parse as a Dockerfile ({type(exc).__name__})") from None
    global_args: list[Instruction] = []
    top_vars: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in structure:
        keyword = str(raw["instruction"]).upper()
        if keyword == "COMMENT":
            continue
        item = Instruction(keyword, str(raw["value"]), int(raw["startline"]) + 1)
        if keyword == "FROM":
            stages.append(_new_stage(item, len(stages), stages, top_vars))
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(f"line {item.line}: {keyword} before the first FROM")
            global_args.append(item)
            for name, default in key_values("ARG", item.value):
                if default is not None:
                    top_vars[name] = expand(default, top_vars)[0]
        else:
            stage = stages[-1]
            stage.instructions.append(item)
            if keyword in ("ARG", "ENV"):
                _declare(stage, keyword, item.value, top_vars)
    if not stages:
        raise DockerfileError("no FROM instruction")
    return Dockerfile(global_args, stages)


def _new_stage(item: Instruction, index: int, earlier: list[Stage], top_vars: Mapping[str, str]) -> Stage:
    image, name = image_from(item.value)
    if image is None:
        raise DockerfileError(f"line {item.line}: FROM without an image")
    expanded, unresolved = expand(str(image), top_vars)
    by_name = {s.name.lower(): s for s in earlier if s.name}
    parent = by_name.get(expanded.lower())
    return Stage(
        index=index,
        name=str(name) if name else None,
        base=str(image),
        base_expanded=expanded,
        unresolved=tuple(unresolved),
        line=item.line,
        parent=parent.index if parent else None,
        # A stage built on an earlier one inherits its environment.
        variables=dict(parent.variables) if parent else {},
    )


def _declare(stage: Stage, keyword: str, value: str, top_vars: Mapping[str, str]) -> None:
    for name, default in key_values(keyword, value):
        if default is not None:
            stage.variables[name] = expand(default, stage.variables)[0]
        elif keyword == "ARG" and name in top_vars:
            # `ARG NAME` inside a stage brings a global argument's default into scope.
            stage.variables[name] = top_vars[name]
