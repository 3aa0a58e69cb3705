"""Runtime scan of a Docker Engine through its API: the daemon's settings and every container.

An engine that cannot be reached (no socket, refused, no answer within the timeout) is one
error finding, never an exception: the rest of the scan goes on and the report says what was
not assessed.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from scanners.containers.daemon import check_engine_info
from scanners.containers.runtime_rules import EngineFacts, check_container
from scanners.containers.verdicts import SCANNER, emit_verdicts
from scanners.errors import InputError
from scanners.findings import Resource, ResourceKind
from scanners.scanning import ScanContext, error_finding

DEFAULT_TIMEOUT = 10.0
# What docker.DockerClient can talk to (tcp:// is plain HTTP; TLS needs a TLSConfig this API does not take).
SCHEMES = ("unix", "tcp", "http", "https", "ssh")


class EngineUnavailable(Exception):
    """The engine could not be reached or stopped answering; the message is one line."""


def display_url(docker_host: str) -> str:
    """``docker_host`` without a password, fit for findings and logs."""
    parts = urllib.parse.urlsplit(docker_host)
    if parts.password is None:
        return docker_host
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _unix_path(docker_host: str) -> Path | None:
    if docker_host.startswith("unix://"):
        return Path(docker_host.removeprefix("unix://"))
    return None


def _reason(exc: BaseException, timeout: float) -> str:
    """The cause of a connection failure in words, found anywhere in the exception chain."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, FileNotFoundError):
            return "no such socket"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused: nothing is listening"
        if isinstance(current, PermissionError):
            return "permission denied"
        if isinstance(current, TimeoutError) or "timeout" in type(current).__name__.lower():
            return f"no answer within {timeout:g} s"
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += [a for a in current.args if isinstance(a, BaseException)]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_docker_host(docker_host: str) -> None:
    """InputError unless ``docker_host`` is an engine address the client understands."""
    parts = urllib.parse.urlsplit(docker_host)
    if parts.scheme not in SCHEMES:
        expected = ", ".join(f"{s}://" for s in SCHEMES)
        raise InputError(f"Docker host {display_url(docker_host)!r}: unsupported address (expected {expected})")
    if not (parts.netloc or parts.path.strip("/")):
        raise InputError(f"Docker host {display_url(docker_host)!r}: no socket path or host name")


def connect(docker_host: str, timeout: float = DEFAULT_TIMEOUT) -> docker.DockerClient:
    """A client that has already talked to the engine (API version negotiated), or EngineUnavailable."""
    check_docker_host(docker_host)
    where = display_url(docker_host)
    path = _unix_path(docker_host)
    if path is not None and not path.exists():
        raise EngineUnavailable(f"cannot reach the Docker Engine at {where}: no such socket")
    if path is not None and not path.is_socket():
        raise EngineUnavailable(f"cannot reach the Docker Engine at {where}: {path} is not a socket")
    try:
        # Without a version the client asks the engine for it, which proves the engine answers.
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker Engine at {where}: {_reason(exc, timeout)}") from None


def _bridge_options(client: docker.DockerClient) -> dict[str, str] | None:
    # The name filter matches substrings; only the network called exactly "bridge" is the default one.
    for network in client.api.networks(names=["bridge"]):
        if network.get("Name") == "bridge" and network.get("Driver") == "bridge":
            return dict(network.get("Options") or {})
    return None


def _container_resource(attrs: dict[str, Any], host: str | None) -> Resource:
    name = str(attrs.get("Name") or attrs.get("Id", "")[:12]).lstrip("/")
    image = str((attrs.get("Config") or {}).get("Image") or attrs.get("Image") or "")
    return Resource(kind=ResourceKind.CONTAINER, host=host, container=name, image=image or None)


def scan_docker_runtime(
    ctx: ScanContext,
    docker_host: str,
    *,
    host: str | None = None,
    include_stopped: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Check the engine at ``docker_host`` and its running containers (all of them with ``include_stopped``).

    A malformed ``docker_host`` is an InputError; an engine that cannot be reached is an error finding.
    """
    check_docker_host(docker_host)
    if ctx.cancelled.is_set():
        return
    where = display_url(docker_host)
    engine = Resource(kind=ResourceKind.HOST, host=host, endpoint=where)
    ctx.progress(f"containers: connecting to the Docker Engine at {where}")
    try:
        client = connect(docker_host, timeout)
    except EngineUnavailable as exc:
        ctx.emit(error_finding(ctx.catalog, SCANNER, engine, str(exc)))
        return
    try:
        _scan_engine(ctx, client, docker_host, engine, host, include_stopped)
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        # Findings already emitted stay; the report shows the engine was not fully assessed.
        message = f"Docker Engine at {where} failed during the scan: {_reason(exc, timeout)}"
        ctx.emit(error_finding(ctx.catalog, SCANNER, engine, message))
    finally:
        client.close()


def _scan_engine(
    ctx: ScanContext,
    client: docker.DockerClient,
    docker_host: str,
    engine: Resource,
    host: str | None,
    include_stopped: bool,
) -> None:
    info: dict[str, Any] = client.info()
    emit_verdicts(ctx, check_engine_info(info, _bridge_options(client)), engine)
    path = _unix_path(docker_host)
    sockets = frozenset({str(path), str(path.resolve())}) if path else frozenset()
    facts = EngineFacts.from_info(info, sockets)
    containers = client.containers.list(all=include_stopped, ignore_removed=True)
    ctx.progress(f"containers: {len(containers)} container(s) on {engine.endpoint}")
    for container in containers:
        if ctx.cancelled.is_set():
            return
        attrs: dict[str, Any] = container.attrs
        status = str((attrs.get("State") or {}).get("Status", ""))
        emit_verdicts(
            ctx,
            check_container(attrs, facts),
            _container_resource(attrs, host),
            details={"container_id": str(attrs.get("Id", ""))[:12], "state": status},
        )
