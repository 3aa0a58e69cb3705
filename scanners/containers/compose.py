"""Checks of one Compose service on the effective model (CTR-C-001 to CTR-C-012)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanners.containers import policy
from scanners.containers.verdicts import Verdict, verdict


@dataclass(frozen=True, slots=True)
class Mount:
    source: str | None  # host path for a bind mount, None for named or anonymous volumes
    target: str
    writable: bool
    spec: str  # as written, for evidence


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def _is_host_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def service_mounts(service: dict[str, Any]) -> list[Mount]:
    mounts: list[Mount] = []
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            source = item.get("source")
            bind = item.get("type") == "bind" or (isinstance(source, str) and _is_host_path(source))
            mounts.append(
                Mount(
                    source=str(source) if bind and source else None,
                    target=str(item.get("target", "")),
                    writable=not _truthy(item.get("read_only", False)),
                    spec=f"{source}:{item.get('target')}" + (":ro" if _truthy(item.get("read_only")) else ""),
                )
            )
            continue
        parts = str(item).split(":")
        if len(parts) == 1:
            mounts.append(Mount(None, parts[0], True, str(item)))
            continue
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        mounts.append(Mount(source if _is_host_path(source) else None, target, "ro" not in options, str(item)))
    return mounts


def check_service(service: dict[str, Any]) -> list[Verdict]:
    mounts = service_mounts(service)
    return [
        _privileged(service),
        _docker_socket(mounts),
        _host_network(service),
        _host_pid_ipc(service),
        _capabilities(service),
        _read_only(service),
        _no_new_privileges(service),
        _user(service),
        _limits(service),
        _healthcheck(service),
        _restart(service),
        _sensitive_paths(mounts),
    ]


def _privileged(service: dict[str, Any]) -> Verdict:
    value = service.get("privileged", False)
    return verdict(
        "CTR-C-001",
        ["privileged: true"] if _truthy(value) else [],
        observed={"privileged": value},
        expected={"privileged": False},
        ok="not privileged",
    )


def _docker_socket(mounts: list[Mount]) -> Verdict:
    hits = [m.spec for m in mounts if m.source and policy.is_engine_socket(m.source)]
    return verdict(
        "CTR-C-002",
        [f"engine socket mounted: {h}" for h in hits],
        observed={"volumes": hits},
        expected="no Docker or container engine socket mounted",
        ok="no engine socket mounted",
    )


def _host_network(service: dict[str, Any]) -> Verdict:
    mode = service.get("network_mode")
    return verdict(
        "CTR-C-003",
        ["network_mode: host"] if mode == "host" else [],
        observed={"network_mode": mode},
        expected="network_mode not host",
        ok="own network namespace",
    )


def _host_pid_ipc(service: dict[str, Any]) -> Verdict:
    shared = {key: service.get(key) for key in ("pid", "ipc") if service.get(key) == "host"}
    return verdict(
        "CTR-C-004",
        [f"{key}: host" for key in shared],
        observed={key: service.get(key) for key in ("pid", "ipc")},
        expected={"pid": "not host", "ipc": "not host"},
        ok="own PID and IPC namespaces",
    )


def _capabilities(service: dict[str, Any]) -> Verdict:
    dropped = [policy.normalize_capability(str(c)) for c in service.get("cap_drop") or []]
    added = [str(c) for c in service.get("cap_add") or []]
    problems: list[str] = []
    if "ALL" not in dropped:
        problems.append("cap_drop does not include ALL")
    dangerous = policy.dangerous_capabilities(added)
    if dangerous:
        problems.append(f"dangerous capabilities added: {', '.join(dangerous)}")
    return verdict(
        "CTR-C-005",
        problems,
        observed={"cap_drop": dropped, "cap_add": [policy.normalize_capability(c) for c in added]},
        expected={"cap_drop": ["ALL"], "cap_add": "only capabilities from Docker's default set"},
        ok="all capabilities dropped, none dangerous added",
    )


def _read_only(service: dict[str, Any]) -> Verdict:
    value = service.get("read_only", False)
    return verdict(
        "CTR-C-006",
        [] if _truthy(value) else ["root filesystem writable (read_only not true)"],
        observed={"read_only": value},
        expected={"read_only": True},
        ok="read-only root filesystem",
    )


def no_new_privileges_set(options: list[str]) -> bool:
    """True when security options turn no-new-privileges on (`no-new-privileges`, `:true` or `=true`)."""
    enabled = False
    for option in options:
        name, _, value = option.replace("=", ":").partition(":")
        if name.strip() == "no-new-privileges":
            enabled = value.strip().lower() in ("", "true")
    return enabled


def _no_new_privileges(service: dict[str, Any]) -> Verdict:
    options = [str(o) for o in service.get("security_opt") or []]
    return verdict(
        "CTR-C-007",
        [] if no_new_privileges_set(options) else ["no-new-privileges not set in security_opt"],
        observed={"security_opt": options},
        expected={"security_opt": ["no-new-privileges:true"]},
        ok="no-new-privileges set",
    )


def _user(service: dict[str, Any]) -> Verdict:
    user = service.get("user")
    if user is None:
        problems = ["no user: runs as the image's user (root unless the image sets USER)"]
    elif policy.is_root_user(str(user)):
        problems = [f"user: {user} is root"]
    else:
        problems = []
    return verdict(
        "CTR-C-008",
        problems,
        observed={"user": user},
        expected={"user": "<non-root uid>:<gid>"},
        ok=f"runs as {user}",
    )


def _set(value: Any) -> bool:
    """A limit counts when present and not one of the spellings of "unlimited"."""
    return value is not None and str(value).strip() not in ("", "0", "-1", "0.0")


def _limits(service: dict[str, Any]) -> Verdict:
    deploy_limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    found = {
        "memory": next((v for v in (service.get("mem_limit"), deploy_limits.get("memory")) if _set(v)), None),
        "pids": next((v for v in (service.get("pids_limit"), deploy_limits.get("pids")) if _set(v)), None),
        "cpu": next(
            (
                v
                for v in (
                    service.get("cpus"),
                    service.get("cpu_quota"),
                    service.get("cpu_shares"),
                    service.get("cpu_count"),
                    service.get("cpu_percent"),
                    deploy_limits.get("cpus"),
                )
                if _set(v)
            ),
            None,
        ),
    }
    missing = [name for name, value in found.items() if value is None]
    return verdict(
        "CTR-C-009",
        [f"no {'/'.join(missing)} limit"] if missing else [],
        observed=found,
        expected={"memory": "set", "pids": "set", "cpu": "set"},
        ok="memory, PIDs and CPU limited",
    )


def _healthcheck(service: dict[str, Any]) -> Verdict:
    check = service.get("healthcheck")
    test = check.get("test") if isinstance(check, dict) else None
    if not isinstance(check, dict):
        problems = ["no healthcheck"]
    elif _truthy(check.get("disable", False)):
        problems = ["healthcheck disabled"]
    elif test is None:
        problems = ["healthcheck without a test"]
    elif test in ("NONE", ["NONE"]):
        problems = ["healthcheck test NONE disables it"]
    else:
        problems = []
    # Whether a probe exists, not the probe: its command can hold credentials.
    return verdict(
        "CTR-C-010",
        problems,
        observed={"healthcheck": None if not isinstance(check, dict) else problems[0] if problems else "test defined"},
        expected={"healthcheck": {"test": "a command probing the service"}},
        ok="healthcheck defined",
    )


def _restart(service: dict[str, Any]) -> Verdict:
    restart = service.get("restart")
    deploy_policy = (service.get("deploy") or {}).get("restart_policy")
    if restart is not None:
        name, _, count = str(restart).partition(":")
        retries = int(count) if count.strip().isdigit() else None
        observed: dict[str, Any] = {"restart": restart}
    elif isinstance(deploy_policy, dict):
        name = {"any": "always", "none": "no"}.get(str(deploy_policy.get("condition", "any")), "on-failure")
        attempts = str(deploy_policy.get("max_attempts"))
        retries = int(attempts) if attempts.isdigit() else None
        observed = {"deploy.restart_policy": deploy_policy}
    else:
        name, retries, observed = "", None, {"restart": None}
    problem = policy.restart_policy_problem(name, retries)
    return verdict(
        "CTR-C-011",
        [problem] if problem else [],
        observed=observed,
        expected={"restart": f"on-failure:N with N from 1 to {policy.MAX_RESTART_RETRIES}"},
        ok=f"restart {name}:{retries}",
    )


def _sensitive_paths(mounts: list[Mount]) -> Verdict:
    hits: list[str] = []
    for mount in mounts:
        if mount.source is None or policy.is_engine_socket(mount.source):
            continue  # named volumes are Docker-managed; engine sockets are CTR-C-002
        reason = policy.sensitive_mount_reason(mount.source, mount.writable)
        if reason:
            hits.append(f"{reason} ({mount.spec})")
    return verdict(
        "CTR-C-012",
        hits,
        observed={"volumes": [m.spec for m in mounts if m.source]},
        expected="no sensitive host directory mounted, nothing below one writable",
        ok="no sensitive host path mounted",
    )
