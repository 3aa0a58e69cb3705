"""Docker daemon checks: daemon.json statically, and what `docker info` shows of a running engine.

daemon.json shows the configuration as written; `docker info` shows what the engine really
runs with, but only part of it (live-restore, user namespaces, registries and the default
bridge's options; not log options, ulimits, no-new-privileges or the userland proxy).
"""

from __future__ import annotations

import json
import re
from typing import Any

from scanners.containers.verdicts import Verdict, verdict
from scanners.errors import InputError
from scanners.findings import Status

_LOCAL_SCHEMES = ("unix://", "fd://", "npipe://")
_ROTATED_DRIVERS = ("json-file", "local")


def load_daemon_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: daemon.json must be a JSON object, not {type(data).__name__}")
    return data


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf'"{re.escape(key)}"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def check_daemon_json(text: str, source: str) -> list[Verdict]:
    """Every daemon.json control on the file's text; InputError if it is not a JSON object."""
    config = load_daemon_json(text, source)

    def line(key: str) -> int | None:
        return _line_of(text, key)

    return [
        _tcp_without_tls(config, line("hosts")),
        _insecure_registries(config.get("insecure-registries") or [], line("insecure-registries")),
        _flag(
            "CTR-D-004", config, "icc", want=False, default=True, line=line("icc"), what="inter-container communication"
        ),
        _log_limits(config, line("log-driver") or line("log-opts")),
        _flag(
            "CTR-D-006",
            config,
            "live-restore",
            want=True,
            default=False,
            line=line("live-restore"),
            what="live restore",
        ),
        _flag(
            "CTR-D-007",
            config,
            "userland-proxy",
            want=False,
            default=True,
            line=line("userland-proxy"),
            what="userland proxy",
        ),
        _flag(
            "CTR-D-008",
            config,
            "no-new-privileges",
            want=True,
            default=False,
            line=line("no-new-privileges"),
            what="no-new-privileges default",
        ),
        _userns(config.get("userns-remap")),
        _ulimits(config.get("default-ulimits")),
    ]


def _tcp_without_tls(config: dict[str, Any], line: int | None) -> Verdict:
    hosts = config.get("hosts") or []
    hosts = [hosts] if isinstance(hosts, str) else [str(h) for h in hosts]
    remote = [h for h in hosts if not h.startswith(_LOCAL_SCHEMES)]
    verified = config.get("tlsverify") is True and all(config.get(k) for k in ("tlscacert", "tlscert", "tlskey"))
    problems: list[str] = []
    if remote and not verified:
        how = "TLS without client verification" if config.get("tls") is True else "no TLS"
        problems.append(f"API on {', '.join(remote)} with {how}")
    return verdict(
        "CTR-D-001",
        problems,
        observed={"hosts": hosts, "tls": config.get("tls"), "tlsverify": config.get("tlsverify")},
        expected="unix socket only, or tlsverify true with tlscacert, tlscert and tlskey",
        ok="no unauthenticated TCP listener" if remote else "unix socket only",
        line=line,
    )


def _insecure_registries(registries: list[Any], line: int | None) -> Verdict:
    names = [str(r) for r in registries]
    return verdict(
        "CTR-D-003",
        [f"insecure registries: {', '.join(names)}"] if names else [],
        observed={"insecure-registries": names},
        expected={"insecure-registries": []},
        ok="no insecure registries",
        line=line,
    )


def _flag(
    control_id: str, config: dict[str, Any], key: str, *, want: bool, default: bool, line: int | None, what: str
) -> Verdict:
    value = config.get(key, default)
    state = "on" if value else "off"
    suffix = "" if key in config else " (the default)"
    return verdict(
        control_id,
        [] if value is want else [f"{what} {state}{suffix}"],
        observed={key: config.get(key)},
        expected={key: want},
        ok=f"{what} {state}",
        line=line,
    )


def _log_limits(config: dict[str, Any], line: int | None) -> Verdict:
    driver = str(config.get("log-driver") or "json-file")
    options = config.get("log-opts") or {}
    problems: list[str] = []
    if driver in _ROTATED_DRIVERS and not options.get("max-size"):
        problems.append(f"log driver {driver} without max-size")
    return verdict(
        "CTR-D-005",
        problems,
        observed={"log-driver": config.get("log-driver"), "log-opts": options},
        expected="max-size in log-opts for json-file and local, or a central log driver",
        ok=f"log driver {driver} bounded",
        line=line,
    )


def _userns(value: Any) -> Verdict:
    return verdict(
        "CTR-D-009",
        [] if value else ["no user namespace remapping (userns-remap unset)"],
        observed={"userns-remap": value},
        expected={"userns-remap": "default or a dedicated user"},
        ok=f"userns-remap {value}",
    )


def _ulimits(value: Any) -> Verdict:
    return verdict(
        "CTR-D-012",
        [] if value else ["no default-ulimits"],
        observed={"default-ulimits": value},
        expected={"default-ulimits": "nofile and nproc limits"},
        ok="default ulimits set",
    )


# The engine always lists loopback as insecure; it is not a configuration choice.
_BUILTIN_INSECURE = frozenset({"127.0.0.0/8", "::1/128"})


def check_engine_info(info: dict[str, Any], bridge_options: dict[str, str] | None) -> list[Verdict]:
    """Daemon controls visible in `docker info` (and the default bridge's options, if it exists)."""
    registry = info.get("RegistryConfig") or {}
    insecure = [c for c in registry.get("InsecureRegistryCIDRs") or [] if c not in _BUILTIN_INSECURE]
    insecure += [
        name for name, index in (registry.get("IndexConfigs") or {}).items() if not (index or {}).get("Secure", True)
    ]
    security = [str(o) for o in info.get("SecurityOptions") or []]
    live = info.get("LiveRestoreEnabled") is True
    userns = any(o == "name=userns" or o.startswith("name=userns,") for o in security)
    verdicts = [
        _insecure_registries(insecure, None),
        verdict(
            "CTR-D-006",
            [] if live else ["live restore off"],
            observed={"LiveRestoreEnabled": info.get("LiveRestoreEnabled")},
            expected={"LiveRestoreEnabled": True},
            ok="live restore on",
        ),
        verdict(
            "CTR-D-009",
            [] if userns else ["no user namespace remapping"],
            observed={"SecurityOptions": security},
            expected="name=userns in SecurityOptions",
            ok="user namespaces remapped",
        ),
    ]
    if bridge_options is None:
        verdicts.append(
            Verdict(
                "CTR-D-004",
                Status.NOT_APPLICABLE,
                observed="no default bridge network",
                expected={"com.docker.network.bridge.enable_icc": "false"},
                summary="the engine has no default bridge, so no inter-container traffic on it",
            )
        )
    else:
        icc = bridge_options.get("com.docker.network.bridge.enable_icc", "true")
        verdicts.append(
            verdict(
                "CTR-D-004",
                [] if icc == "false" else ["inter-container communication on the default bridge"],
                observed={"com.docker.network.bridge.enable_icc": icc},
                expected={"com.docker.network.bridge.enable_icc": "false"},
                ok="inter-container communication off",
            )
        )
    return verdicts
