"""Checks of one container as the Engine API inspects it (CTR-R-001 to CTR-R-011)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanners.containers import policy
from scanners.containers.compose import no_new_privileges_set
from scanners.containers.verdicts import Verdict, verdict


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """What the engine contributes to a container's confinement, from `docker info`."""

    seccomp: bool  # the engine filters system calls at all
    seccomp_profile: str  # daemon-wide profile name ("default", "unconfined", a path)
    engine_sockets: frozenset[str] = frozenset()  # the socket(s) this scan connected through

    @classmethod
    def from_info(cls, info: dict[str, Any], engine_sockets: frozenset[str] = frozenset()) -> EngineFacts:
        profile = ""
        seccomp = False
        for option in info.get("SecurityOptions") or []:
            fields = dict(part.partition("=")[::2] for part in str(option).split(","))
            if fields.get("name") == "seccomp":
                seccomp = True
                profile = fields.get("profile", "default")
        return cls(seccomp=seccomp, seccomp_profile=profile, engine_sockets=engine_sockets)


def check_container(attrs: dict[str, Any], engine: EngineFacts) -> list[Verdict]:
    host_config: dict[str, Any] = attrs.get("HostConfig") or {}
    config: dict[str, Any] = attrs.get("Config") or {}
    return [
        _privileged(host_config),
        _capabilities(host_config),
        _namespaces(host_config),
        _mounts(attrs.get("Mounts") or [], engine),
        _read_only(host_config),
        _user(config),
        _memory(host_config),
        _pids(host_config),
        _confinement(attrs, host_config, engine),
        _restart(host_config),
        _no_new_privileges(host_config),
    ]


def _privileged(host_config: dict[str, Any]) -> Verdict:
    value = bool(host_config.get("Privileged"))
    return verdict(
        "CTR-R-001",
        ["privileged"] if value else [],
        observed={"Privileged": value},
        expected={"Privileged": False},
        ok="not privileged",
    )


def _capabilities(host_config: dict[str, Any]) -> Verdict:
    added = [str(c) for c in host_config.get("CapAdd") or []]
    dangerous = policy.dangerous_capabilities(added)
    return verdict(
        "CTR-R-002",
        [f"capabilities added beyond the default set: {', '.join(dangerous)}"] if dangerous else [],
        observed={"CapAdd": added, "CapDrop": host_config.get("CapDrop") or []},
        expected="no CapAdd outside Docker's default set",
        ok="no capability beyond the default set",
    )


_NAMESPACE_MODES = {"network": "NetworkMode", "pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode"}


def _namespaces(host_config: dict[str, Any]) -> Verdict:
    modes = {key: host_config.get(key) or "" for key in _NAMESPACE_MODES.values()}
    shared = [name for name, key in _NAMESPACE_MODES.items() if modes[key] == "host"]
    return verdict(
        "CTR-R-003",
        [f"host {', '.join(shared)} namespace shared"] if shared else [],
        observed=modes,
        expected="no namespace mode host",
        ok="own namespaces",
    )


def _mounts(mounts: list[dict[str, Any]], engine: EngineFacts) -> Verdict:
    problems: list[str] = []
    binds: list[str] = []
    for mount in mounts:
        if mount.get("Type") != "bind":
            continue  # volumes and tmpfs are managed by the engine, not host paths
        source = str(mount.get("Source", ""))
        writable = bool(mount.get("RW", True))
        binds.append(f"{source}:{mount.get('Destination')}" + ("" if writable else ":ro"))
        if policy.is_engine_socket(source, engine.engine_sockets):
            problems.append(f"engine socket {source} mounted")
        else:
            reason = policy.sensitive_mount_reason(source, writable)
            if reason:
                problems.append(reason)
    return verdict(
        "CTR-R-004",
        problems,
        observed={"binds": binds},
        expected="no engine socket or sensitive host path bind-mounted",
        ok="no sensitive bind mount",
    )


def _read_only(host_config: dict[str, Any]) -> Verdict:
    value = bool(host_config.get("ReadonlyRootfs"))
    return verdict(
        "CTR-R-005",
        [] if value else ["root filesystem writable"],
        observed={"ReadonlyRootfs": value},
        expected={"ReadonlyRootfs": True},
        ok="read-only root filesystem",
    )


def _user(config: dict[str, Any]) -> Verdict:
    user = str(config.get("User") or "")
    return verdict(
        "CTR-R-006",
        [f"runs as {user or 'root (no user set)'}"] if policy.is_root_user(user) else [],
        observed={"User": user},
        expected={"User": "<non-root uid>:<gid>"},
        ok=f"runs as {user}",
    )


def _memory(host_config: dict[str, Any]) -> Verdict:
    memory = int(host_config.get("Memory") or 0)
    return verdict(
        "CTR-R-007",
        [] if memory > 0 else ["no memory limit"],
        observed={"Memory": memory},
        expected="Memory > 0",
        ok=f"memory limited to {memory} bytes",
    )


def _pids(host_config: dict[str, Any]) -> Verdict:
    pids = host_config.get("PidsLimit")
    limited = isinstance(pids, int) and pids > 0
    return verdict(
        "CTR-R-008",
        [] if limited else ["no PIDs limit"],
        observed={"PidsLimit": pids},
        expected="PidsLimit > 0",
        ok=f"PIDs limited to {pids}",
    )


def _confinement(attrs: dict[str, Any], host_config: dict[str, Any], engine: EngineFacts) -> Verdict:
    options = [str(o).replace("=", ":", 1) for o in host_config.get("SecurityOpt") or []]
    problems: list[str] = []
    if host_config.get("Privileged"):
        problems.append("privileged: seccomp and AppArmor disabled")
    elif "seccomp:unconfined" in options:
        problems.append("seccomp unconfined")
    elif not engine.seccomp:
        problems.append("the engine has no seccomp support: system calls unfiltered")
    elif engine.seccomp_profile == "unconfined":
        problems.append("the engine's default seccomp profile is unconfined")
    if "apparmor:unconfined" in options or attrs.get("AppArmorProfile") == "unconfined":
        problems.append("AppArmor unconfined")
    return verdict(
        "CTR-R-009",
        problems,
        observed={
            "SecurityOpt": host_config.get("SecurityOpt") or [],
            "AppArmorProfile": attrs.get("AppArmorProfile"),
            "engine seccomp profile": engine.seccomp_profile or None,
        },
        expected="seccomp and AppArmor (where available) not unconfined",
        ok="seccomp confined",
    )


def _restart(host_config: dict[str, Any]) -> Verdict:
    restart = host_config.get("RestartPolicy") or {}
    name = str(restart.get("Name") or "")
    retries = restart.get("MaximumRetryCount")
    problem = policy.restart_policy_problem(name, retries if isinstance(retries, int) else None)
    return verdict(
        "CTR-R-010",
        [problem] if problem else [],
        observed={"RestartPolicy": {"Name": name, "MaximumRetryCount": retries}},
        expected={"RestartPolicy": f"on-failure with MaximumRetryCount 1 to {policy.MAX_RESTART_RETRIES}"},
        ok=f"restart on-failure:{retries}",
    )


def _no_new_privileges(host_config: dict[str, Any]) -> Verdict:
    options = [str(o) for o in host_config.get("SecurityOpt") or []]
    return verdict(
        "CTR-R-011",
        [] if no_new_privileges_set(options) else ["no-new-privileges not set"],
        observed={"SecurityOpt": options},
        expected="no-new-privileges in SecurityOpt",
        ok="no-new-privileges set",
    )
