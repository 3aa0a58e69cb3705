"""The container scanner: Dockerfiles, Compose files and daemon.json statically, running engines through their API.

Public API (the scan pipeline and the container_hardening role's tests call these):

- ``scan_container_files(ctx, roots)``: every Dockerfile, Compose project (its effective
  configuration, override file merged) and daemon.json under the roots.
- ``scan_docker_runtime(ctx, docker_host, *, host=None, include_stopped=False, timeout=10.0)``:
  the engine's security settings from `docker info` and every container.
- ``effective_compose(paths)``: the merged Compose model of a base file and its overrides.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanners.containers.compose_model import effective_compose, project_files
    from scanners.containers.files import scan_container_files
    from scanners.containers.runtime import DEFAULT_TIMEOUT, scan_docker_runtime
    from scanners.containers.verdicts import SCANNER

# Loaded on first use: the container_hardening role's filters import the Compose model and the
# policy from this package on an Ansible controller (an execution environment, say) that has
# PyYAML but neither the Docker SDK nor dockerfile-parse.
_PUBLIC = {
    "DEFAULT_TIMEOUT": "scanners.containers.runtime",
    "SCANNER": "scanners.containers.verdicts",
    "effective_compose": "scanners.containers.compose_model",
    "project_files": "scanners.containers.compose_model",
    "scan_container_files": "scanners.containers.files",
    "scan_docker_runtime": "scanners.containers.runtime",
}

__all__ = [
    "DEFAULT_TIMEOUT",
    "SCANNER",
    "effective_compose",
    "project_files",
    "scan_container_files",
    "scan_docker_runtime",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
