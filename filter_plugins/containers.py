"""Jinja filters of the container_hardening role (controller side).

The role's decisions about Docker need more than Jinja: merging daemon.json with what the
operator already has, refusing plaintext TCP listeners, and generating a Compose override that
undoes exactly the weaknesses of the user's Compose file. They use the container scanner's own
rules (``scanners.containers``), so the role fixes what the scanner reports and nothing else.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

from scanners.containers import policy
from scanners.containers.compose import check_service, service_mounts
from scanners.containers.compose_model import effective_compose
from scanners.errors import InputError
from scanners.findings import Status

# Listener schemes that stay on the host (not a network API).
LOCAL_SCHEMES = ("unix://", "fd://", "npipe://")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Marks the override files the role owns: any other override next to a Compose file is the user's.
OVERRIDE_MARKER = "Managed by preaudit (container_hardening)"
OVERRIDE_NAMES = {
    "docker-compose.yml": "docker-compose.override.yml",
    "docker-compose.yaml": "docker-compose.override.yaml",
    "compose.yml": "compose.override.yml",
    "compose.yaml": "compose.override.yaml",
}


def _plain(value: Any) -> Any:
    """``value`` with Ansible's tagged and lazy containers turned into plain Python (YAML can dump it)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


# --- daemon.json -----------------------------------------------------------------------------


def _tls_verified(config: Mapping[str, Any]) -> bool:
    return config.get("tlsverify") is True and all(config.get(k) for k in ("tlscacert", "tlscert", "tlskey"))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def docker_daemon(
    existing: Any, settings: Mapping[str, Mapping[str, Any]], active: Any, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The daemon.json to write: the host's file with the role's settings merged over it.

    ``existing`` is the host's daemon.json text ("" or None when absent); ``settings`` maps each
    control id to the keys it sets; only the ``active`` controls' keys are merged. ``options``:
    ``overwrite`` (keys merged after the role's), ``insecure_registries_allowed``, ``unit_flags``
    (the dockerd command line of the systemd unit). Returns ``config`` and what was refused or
    removed, for the run summary.
    """
    text = str(existing or "")
    try:
        base = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise AnsibleFilterError(
            f"daemon.json is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); dockerd cannot start "
            "with it either: fix or remove it, the role does not overwrite a file it cannot read"
        ) from None
    if not isinstance(base, dict):
        raise AnsibleFilterError(f"daemon.json must be a JSON object, not {type(base).__name__}")
    on = set(active or ())
    settings = _plain(settings)
    options = _plain(options)
    config: dict[str, Any] = dict(base)
    for control, keys in settings.items():
        if control not in on:
            continue
        for key, value in keys.items():
            if key == "log-opts":
                # Options of the driver already configured are kept when the driver stays the same.
                same = str(base.get("log-driver") or "json-file") == str(keys.get("log-driver") or "json-file")
                value = {**(base.get("log-opts") or {} if same else {}), **value}
            elif key == "default-ulimits":
                value = {**(base.get("default-ulimits") or {}), **value}
            config[key] = value
    config.update(options.get("overwrite") or {})

    refused_hosts: list[str] = []
    unit_tcp: list[str] = []
    if "CTR-D-001" in on:
        verified = _tls_verified(config)
        hosts = _as_list(config.get("hosts"))
        if not verified:
            refused_hosts = [h for h in hosts if not h.startswith(LOCAL_SCHEMES)]
        if "hosts" in config:
            kept = [h for h in hosts if h not in refused_hosts]
            # Keep the daemon reachable on its socket: the unit of a file with "hosts" has no -H.
            config["hosts"] = kept or [DEFAULT_SOCKET]
        unit_tcp = [] if verified else _unit_tcp_listeners(_as_list(options.get("unit_flags")))

    removed_registries: list[str] = []
    kept_registries: list[str] = []
    if "CTR-D-003" in on and "insecure-registries" in config:
        allowed = set(_as_list(options.get("insecure_registries_allowed")))
        registries = _as_list(config.get("insecure-registries"))
        kept_registries = [r for r in registries if r in allowed]
        removed_registries = [r for r in registries if r not in allowed]
        if kept_registries:
            config["insecure-registries"] = kept_registries
        else:
            config.pop("insecure-registries")

    seccomp_removed = False
    if options.get("seccomp") and str(config.get("seccomp-profile", "")).strip() == "unconfined":
        config.pop("seccomp-profile")
        seccomp_removed = True

    if "CTR-D-010" in on and config.get("group") not in (None, "docker"):
        config["group"] = "docker"

    return {
        "config": config,
        "refused_hosts": refused_hosts,
        "unit_tcp": unit_tcp,
        "removed_registries": removed_registries,
        "kept_registries": kept_registries,
        "seccomp_removed": seccomp_removed,
        "userns_remap": config.get("userns-remap") or "",
    }


def _unit_tcp_listeners(flags: list[str]) -> list[str]:
    """Network listeners given with -H/--host on the unit's dockerd command line."""
    found: list[str] = []
    for index, flag in enumerate(flags):
        value = None
        if flag in ("-H", "--host") and index + 1 < len(flags):
            value = flags[index + 1]
        elif flag.startswith(("-H=", "--host=")):
            value = flag.split("=", 1)[1]
        elif flag.startswith("-H") and len(flag) > 2:
            value = flag[2:]
        if value is not None and not value.startswith(LOCAL_SCHEMES):
            found.append(value)
    return found


_ARGV = re.compile(r"argv\[\]=(.*?) ; ignore_errors=")


def dockerd_unit_flags(show: Any) -> list[str]:
    """The dockerd options of the unit's ExecStart (``systemctl show -p ExecStart --value`` output).

    The binary itself and unexpanded environment references (``$DOCKER_OPTS``) are left out: the
    validation runs dockerd with exactly the options the unit gives it.
    """
    commands = _ARGV.findall(str(show or ""))
    if not commands:
        return []
    try:
        argv = shlex.split(commands[-1])
    except ValueError:
        return []
    return [a for a in argv[1:] if "$" not in a]


# --- Compose override --------------------------------------------------------------------------


class Reset:
    """``!reset``: Compose removes the attribute from the merged configuration."""

    def __init__(self, empty: Any = None) -> None:
        self.empty = empty


class Replace:
    """``!override``: Compose replaces the attribute instead of merging it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _OverrideDumper(yaml.SafeDumper):
    pass


def _represent_reset(dumper: yaml.SafeDumper, data: Reset) -> yaml.Node:
    if isinstance(data.empty, list):
        return dumper.represent_sequence("!reset", [], flow_style=True)
    return dumper.represent_scalar("!reset", "null")


def _represent_replace(dumper: yaml.SafeDumper, data: Replace) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping("!override", data.value)
    return dumper.represent_sequence("!override", data.value)


_OverrideDumper.add_representer(Reset, _represent_reset)
_OverrideDumper.add_representer(Replace, _represent_replace)


def override_path(compose_file: Any) -> str:
    """The override file Compose loads with ``compose_file`` (same directory, matching name)."""
    path = Path(str(compose_file))
    name = OVERRIDE_NAMES.get(path.name, f"{path.stem}.override{path.suffix or '.yml'}")
    return str(path.with_name(name))


def _load_base(text: str, path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="preaudit-compose-") as directory:
        copy = Path(directory) / (Path(path).name or "docker-compose.yml")
        copy.write_text(text, encoding="utf-8")
        try:
            return effective_compose([copy])
        except InputError as exc:
            raise AnsibleFilterError(str(exc).replace(str(copy), path)) from None


def _failing(service: dict[str, Any]) -> dict[str, Any]:
    """The controls the service fails on its own, with the scanner's observation of each."""
    return {v.control_id: v.observed for v in check_service(service) if v.status is Status.FAIL}


def compose_override(
    base_text: Any,
    path: Any,
    services: Mapping[str, Mapping[str, Any]] | None,
    defaults: Mapping[str, Any],
    active: Any,
) -> dict[str, Any]:
    """The override that makes each service of the Compose file at ``path`` pass the CTR-C controls.

    Only what a service fails is overridden (a limit or user the file already sets well is kept);
    explicit per-service settings in ``services`` are always written. Returns the override's
    ``content`` and ``not_applied`` entries (control, target, reason) for the run summary.
    """
    model = _load_base(str(base_text or ""), str(path))
    on = set(active or ())
    wanted = _plain(services or {})
    defaults = _plain(defaults)
    result: dict[str, Any] = {}
    not_applied: list[dict[str, str]] = []
    for name, service in sorted((model.get("services") or {}).items()):
        explicit = dict(wanted.get(name) or {})
        settings = {**defaults, **explicit}
        target = f"{path}: {name}"
        failing = {c: o for c, o in _failing(service).items() if c in on}
        out: dict[str, Any] = {}

        if "CTR-C-001" in failing:
            out["privileged"] = False

        if "CTR-C-003" in failing:
            out["network_mode"] = Reset()
        if ("CTR-C-003" in failing or "ports" in explicit) and settings.get("ports"):
            out["ports"] = list(settings["ports"])

        if "CTR-C-004" in failing:
            for key in ("pid", "ipc"):
                if service.get(key) == "host":
                    out[key] = Reset()

        if "CTR-C-002" in failing or "CTR-C-012" in failing:
            kept = []
            for item, mount in zip(service.get("volumes") or [], service_mounts(service), strict=True):
                socket = mount.source is not None and policy.is_engine_socket(mount.source)
                sensitive = (
                    mount.source is not None
                    and not socket
                    and policy.sensitive_mount_reason(mount.source, mount.writable) is not None
                )
                if (socket and "CTR-C-002" in failing) or (sensitive and "CTR-C-012" in failing):
                    continue
                kept.append(item)
            out["volumes"] = Replace(kept) if kept else Reset([])

        if "CTR-C-005" in failing or "cap_add" in explicit:
            caps = [policy.normalize_capability(str(c)) for c in settings.get("cap_add") or []]
            dangerous = policy.dangerous_capabilities(caps)
            if dangerous:
                not_applied.append(
                    {
                        "control": "CTR-C-005",
                        "target": target,
                        "reason": f"capabilities outside Docker's default set not added: {', '.join(dangerous)}",
                    }
                )
            caps = [c for c in caps if c not in dangerous]
            out["cap_drop"] = ["ALL"]
            if service.get("cap_add"):
                out["cap_add"] = Replace(caps) if caps else Reset([])
            elif caps:
                out["cap_add"] = caps

        if "CTR-C-006" in failing:
            out["read_only"] = True
            if settings.get("tmpfs"):
                out["tmpfs"] = list(settings["tmpfs"])

        if "CTR-C-007" in failing:
            options = [str(o) for o in service.get("security_opt") or []]
            others = [o for o in options if not o.replace("=", ":").startswith("no-new-privileges")]
            secure = [*others, "no-new-privileges:true"]
            out["security_opt"] = Replace(secure) if options else secure

        if "CTR-C-008" in failing or "user" in explicit:
            user = settings.get("user")
            if policy.is_root_user(None if user is None else str(user)):
                not_applied.append({"control": "CTR-C-008", "target": target, "reason": "no non-root user configured"})
            else:
                out["user"] = str(user)

        if "CTR-C-009" in failing or {"mem_limit", "pids_limit", "cpus"} & set(explicit):
            found = failing.get("CTR-C-009") or {}
            for key, kind in (("mem_limit", "memory"), ("pids_limit", "pids"), ("cpus", "cpu")):
                if key in explicit or ("CTR-C-009" in failing and found.get(kind) is None):
                    out[key] = settings.get(key)

        if "CTR-C-010" in failing or "healthcheck" in explicit:
            check = settings.get("healthcheck")
            if isinstance(check, dict) and check.get("test"):
                out["healthcheck"] = Replace(dict(check)) if isinstance(service.get("healthcheck"), dict) else check
            else:
                not_applied.append(
                    {
                        "control": "CTR-C-010",
                        "target": target,
                        "reason": "no healthcheck test configured "
                        f"(container_hardening_compose_services.{name}.healthcheck)",
                    }
                )

        if "CTR-C-011" in failing or "restart" in explicit:
            out["restart"] = str(settings.get("restart"))

        if out:
            result[name] = out

    header = (
        f"# {OVERRIDE_MARKER}: the hardening override of {path}.\n"
        "# Regenerated on every run from that file's services; set container_hardening_compose_services\n"
        "# instead of editing it. Needs Docker Compose v2.24.4 or later (!reset, !override).\n"
    )
    body = yaml.dump({"services": result}, Dumper=_OverrideDumper, sort_keys=False, default_flow_style=False, width=120)
    # PyYAML quotes a tagged null; Compose reads `!reset null` and `!reset 'null'` alike.
    body = body.replace("!reset 'null'", "!reset null")
    return {"content": header + body, "not_applied": not_applied}


def compose_plan(
    files: Any,
    seen: Any,
    services: Mapping[str, Mapping[str, Any]] | None,
    defaults: Mapping[str, Any],
    active: Any,
) -> list[dict[str, Any]]:
    """One entry per Compose file: a managed_files entry for its override (``area``, ``controls``,
    ``path``, ``mode``, ``content``) unless a ``problem`` stops the role, and the run-summary
    entries (``summary``) of what was not applied there.

    ``seen`` holds, per file and in the same order, what the host has: ``exists``, ``text``
    (base64) and ``overrides`` (override file names next to it, true for the role's own).
    """
    controls = [c for c in active or () if str(c).startswith("CTR-C-")]
    plan: list[dict[str, Any]] = []
    for index, file in enumerate(files or []):
        host = (seen or [])[index]
        override = override_path(file)
        foreign = sorted(name for name, ours in (host.get("overrides") or {}).items() if not ours)
        ours = sorted(name for name, mine in (host.get("overrides") or {}).items() if mine)
        problem = None
        if not host.get("exists"):
            problem = "no such file"
        elif foreign:
            problem = (
                f"an override file of the user's own is there ({', '.join(foreign)}): the role does not overwrite it; "
                "merge the hardening into it or remove it"
            )
        elif ours and Path(override).name not in ours:
            problem = f"the role's override has another name ({', '.join(ours)}); remove it"
        else:
            try:
                text = base64.b64decode(str(host.get("text") or "")).decode("utf-8")
                generated = compose_override(text, file, services, defaults, controls)
            except (AnsibleFilterError, UnicodeDecodeError, ValueError) as exc:
                problem = f"not a Compose file the role can read: {exc}"
        if problem is not None:
            summary = [{"control": "CTR-C", "action": "not_applied", "reason": problem, "target": str(file)}]
            plan.append({"file": str(file), "problem": problem, "summary": summary})
            continue
        plan.append(
            {
                "file": str(file),
                "area": "compose",
                "controls": controls,
                "path": override,
                "mode": "0644",
                "content": generated["content"],
                "summary": [{"action": "not_applied", **item} for item in generated["not_applied"]],
            }
        )
    return plan


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "preaudit_docker_daemon": docker_daemon,
            "preaudit_dockerd_unit_flags": dockerd_unit_flags,
            "preaudit_compose_override": compose_override,
            "preaudit_compose_override_path": override_path,
            "preaudit_compose_plan": compose_plan,
        }
