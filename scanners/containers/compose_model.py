"""The effective Compose model: a base file merged with its override files as Compose does it.

Merge rules follow the Compose Specification (and compose-go, its reference implementation):
mappings merge recursively; sequences are appended, then de-duplicated by their unique key
(volumes and devices by container target, ports by their definition, secrets and configs by
target, cap_add/cap_drop/dns/... by value); ``command``, ``entrypoint`` and
``healthcheck.test`` are replaced; list-or-mapping attributes (environment, labels, ...) are
merged by key. The ``!reset`` and ``!override`` YAML tags of Compose v2.24+ remove an attribute
or replace it without merging.

Not done: variable interpolation (``${VAR}`` stays literal: the scanner does not know the
target's environment), ``extends`` and ``include``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scanners.errors import InputError

# The file names Compose looks for, in its order of preference (compose-go cli/options.go).
BASE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILE_NAMES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)


class _Reset:
    """``!reset``: remove the attribute from the merged model."""

    def __repr__(self) -> str:
        return "!reset"


RESET = _Reset()


@dataclass(frozen=True, slots=True)
class Override:
    """``!override``: replace the attribute instead of merging it."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    """A safe loader that keeps Compose's merge tags as markers instead of failing on them."""


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> _Reset:
    return RESET


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    assert isinstance(node, yaml.ScalarNode)
    # Give the scalar its implicit type (int, bool, null) as if it had no tag.
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
    return Override(loader.construct_object(yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark)))


ComposeLoader.add_constructor("!reset", _construct_reset)
ComposeLoader.add_constructor("!override", _construct_override)


def project_files(base: Path) -> list[Path]:
    """``base`` and the override file Compose would load with it (the first one present, if any)."""
    files = [base]
    for name in OVERRIDE_FILE_NAMES:
        candidate = base.parent / name
        if candidate.is_file():
            files.append(candidate)
            break
    return files


def load_compose_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one Compose file, tags kept as markers; InputError if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    try:
        documents = [d for d in yaml.load_all(text, Loader=ComposeLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: invalid YAML{where}") from None
    for document in documents:
        if not isinstance(document, dict):
            raise InputError(f"{path}: a Compose file must be a mapping, not {type(document).__name__}")
        services = document.get("services")
        if services is not None and not isinstance(services, dict | Override):
            raise InputError(f"{path}: 'services' must be a mapping of service names")
    return documents


def effective_compose(paths: Sequence[Path]) -> dict[str, Any]:
    """The merged Compose model of ``paths`` (base first, overrides after), tags applied.

    Raises InputError naming the file when one cannot be read, is not YAML or cannot be merged.
    """
    if not paths:
        raise InputError("effective_compose needs at least one Compose file")
    model: dict[str, Any] = {}
    for path in paths:
        for document in load_compose_documents(path):
            try:
                model = _merge_mapping(model, document, ())
            except _MergeError as exc:
                raise InputError(f"{path}: cannot merge {exc}") from None
    services = model.get("services")
    if services is not None and not isinstance(services, dict):
        raise InputError(f"{paths[-1]}: 'services' must be a mapping of service names")
    for name, service in (services or {}).items():
        if not isinstance(service, dict):
            raise InputError(f"{paths[0]}: service {name!r} must be a mapping")
    return model


class _MergeError(Exception):
    pass


Path_ = tuple[str, ...]


def _matches(path: Path_, pattern: Path_) -> bool:
    return len(path) == len(pattern) and all(p == "*" or p == k for k, p in zip(path, pattern, strict=True))


_REPLACED = (("services", "*", "command"), ("services", "*", "entrypoint"), ("services", "*", "healthcheck", "test"))
# Attributes written either as a list of KEY=VALUE strings or as a mapping; merged by key.
_KEYED_LISTS = (
    ("services", "*", "environment"),
    ("services", "*", "labels"),
    ("services", "*", "annotations"),
    ("services", "*", "sysctls"),
    ("services", "*", "extra_hosts"),
    ("services", "*", "build", "args"),
    ("services", "*", "build", "labels"),
    ("services", "*", "deploy", "labels"),
    ("networks", "*", "labels"),
    ("volumes", "*", "labels"),
)


def _clean(value: Any, path: Path_) -> Any:
    """A value from one file with its tags resolved (``!override`` unwrapped, ``!reset`` entries
    dropped) and every attribute in the shape the merge expects."""
    if isinstance(value, Override):
        return _clean(value.value, path)
    value = _normalize(value, path)
    if isinstance(value, dict):
        return {str(k): _clean(v, (*path, str(k))) for k, v in value.items() if v is not RESET}
    if isinstance(value, list):
        items = [_clean(v, (*path, "[]")) for v in value if v is not RESET]
        # Within one file too, a redefined volume, port or capability replaces the earlier one.
        return _unique(items, path) if _unique_key(path) is not None else items
    return copy.deepcopy(value)


def _merge_mapping(base: dict[str, Any], other: dict[str, Any], path: Path_) -> dict[str, Any]:
    merged = dict(base)
    for key, value in other.items():
        key = str(key)
        child = (*path, key)
        if value is RESET:
            merged.pop(key, None)
        elif isinstance(value, Override) or key not in merged or key.startswith("x-"):
            merged[key] = _clean(value, child)
        else:
            merged[key] = _merge(merged[key], value, child)
    return merged


def _merge(base: Any, other: Any, path: Path_) -> Any:
    """Merge ``other`` (from a later file, tags still in it) into ``base`` (already clean)."""
    other = _normalize(other, path)
    if any(_matches(path, p) for p in _REPLACED) or other is None:
        return _clean(other, path)
    if path[:1] == ("services",) and len(path) == 3 and path[2] == "logging":
        return _merge_logging(base, other, path)
    if isinstance(base, dict) and isinstance(other, dict):
        return _merge_mapping(base, other, path)
    if isinstance(base, list) and isinstance(other, list):
        return _unique([*base, *_clean(other, path)], path)
    if isinstance(base, dict | list) or isinstance(other, dict | list):
        raise _MergeError(f"{'.'.join(path)}: {_shape(base)} in one file, {_shape(other)} in the other")
    return _clean(other, path)


def _shape(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "sequence" if isinstance(value, list) else "scalar"


def _merge_logging(base: Any, other: Any, path: Path_) -> Any:
    # Options only carry over when both files use the same driver (or one names none).
    if isinstance(base, dict) and isinstance(other, dict):
        if "driver" in base and "driver" in other and base["driver"] != other["driver"]:
            return _clean(other, path)
        return _merge_mapping(base, other, path)
    return _clean(other, path)


def _normalize(value: Any, path: Path_) -> Any:
    """Bring the alternative syntaxes of an attribute to one shape so that two files can merge."""
    if isinstance(value, Override) or value is RESET:
        return value
    if any(_matches(path, p) for p in _KEYED_LISTS) and isinstance(value, list):
        return dict(_split_key_value(item, path) for item in value)
    if _matches(path, ("services", "*", "build")) and isinstance(value, str):
        return {"context": value}
    if _matches(path, ("services", "*", "networks")) and isinstance(value, list):
        return {str(name): None for name in value}
    if _matches(path, ("services", "*", "depends_on")) and isinstance(value, list):
        return {str(name): {"condition": "service_started"} for name in value}
    return value


def _split_key_value(item: Any, path: Path_) -> tuple[str, Any]:
    text = str(item)
    # extra_hosts uses HOST:IP (or HOST=IP), the others KEY=VALUE.
    separator = "=" if "=" in text or path[-1] != "extra_hosts" else ":"
    key, found, value = text.partition(separator)
    return key, (value if found else None)


def _unique(items: list[Any], path: Path_) -> list[Any]:
    """Drop redefinitions: a later entry with the same key replaces the earlier one in place."""
    key_of = _unique_key(path) or _identity
    result: list[Any] = []
    index: dict[str, int] = {}
    for item in items:
        key = key_of(item)
        if key in index:
            result[index[key]] = item
        else:
            index[key] = len(result)
            result.append(item)
    return result


def _unique_key(path: Path_) -> Callable[[Any], str] | None:
    if len(path) == 3 and path[0] == "services":
        return _UNIQUE_KEYS.get(path[2])
    return None


def _identity(item: Any) -> str:
    return repr(item)


def volume_target(item: Any) -> str:
    """The container path of a volume in short (``src:dst[:mode]``) or long syntax."""
    if isinstance(item, dict):
        return str(item.get("target", ""))
    parts = str(item).split(":")
    if len(parts) == 1:
        return parts[0]
    return parts[1]


def _port_key(item: Any) -> str:
    if isinstance(item, dict):
        host = item.get("host_ip", "0.0.0.0")  # noqa: S104 - Compose's default bind address, a key here
        return f"{host}:{item.get('published', '')}:{item.get('target')}/{item.get('protocol', 'tcp')}"
    return str(item)


def _mount_key(default_dir: str) -> Callable[[Any], str]:
    def key(item: Any) -> str:
        if isinstance(item, dict):
            return str(item.get("target") or f"{default_dir}/{item.get('source')}")
        return f"{default_dir}/{item}"

    return key


def _capability_key(item: Any) -> str:
    return str(item).strip().upper().removeprefix("CAP_")


_UNIQUE_KEYS: dict[str, Callable[[Any], str]] = {
    "volumes": volume_target,
    "devices": volume_target,
    "ports": _port_key,
    "secrets": _mount_key("/run/secrets"),
    "configs": _mount_key(""),
    "cap_add": _capability_key,
    "cap_drop": _capability_key,
}


def service_lines(path: Path) -> dict[str, int]:
    """The 1-based line where each service is defined in ``path`` (best effort: {} if unparsable)."""
    lines: dict[str, int] = {}
    try:
        nodes = list(yaml.compose_all(path.read_text(encoding="utf-8"), Loader=ComposeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return lines
    for root in nodes:
        if not isinstance(root, yaml.MappingNode):
            continue
        for key, value in root.value:
            if key.value == "services" and isinstance(value, yaml.MappingNode):
                for name, _ in value.value:
                    lines.setdefault(str(name.value), name.start_mark.line + 1)
    return lines
