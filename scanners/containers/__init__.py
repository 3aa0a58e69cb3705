"""The container scanner: Dockerfiles, Compose files and daemon.json statically, running engines through their API.

Public API (the scan pipeline and the container_hardening role's tests call these):

- ``scan_container_files(ctx, roots)``: every Dockerfile, Compose project (its effective
  configuration, override file merged) and daemon.json under the roots.
- ``scan_docker_runtime(ctx, docker_host, *, host=None, include_stopped=False, timeout=10.0)``:
  the engine's security settings from `docker info` and every container.
- ``effective_compose(paths)``: the merged Compose model of a base file and its overrides.
"""

from scanners.containers.compose_model import effective_compose, project_files
from scanners.containers.files import scan_container_files
from scanners.containers.runtime import DEFAULT_TIMEOUT, scan_docker_runtime
from scanners.containers.verdicts import SCANNER

__all__ = [
    "DEFAULT_TIMEOUT",
    "SCANNER",
    "effective_compose",
    "project_files",
    "scan_container_files",
    "scan_docker_runtime",
]
