"""Find the container files under a scan root: Dockerfiles, Compose projects and daemon.json."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from scanners.containers.compose_model import BASE_FILE_NAMES, OVERRIDE_FILE_NAMES, project_files

# Trees that hold dependencies or tool state, never the project's own container files.
SKIPPED_DIRECTORIES = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache", ".ruff_cache"}
)


@dataclass(slots=True)
class ContainerFiles:
    dockerfiles: list[Path] = field(default_factory=list)
    # Each project is a base Compose file followed by the override file Compose loads with it.
    compose_projects: list[list[Path]] = field(default_factory=list)
    daemon_configs: list[Path] = field(default_factory=list)


def is_dockerfile(name: str) -> bool:
    """`Dockerfile`, `Dockerfile.<variant>` or `<variant>.Dockerfile` (not `*.dockerignore`)."""
    if name.endswith(".dockerignore"):
        return False
    return name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile")


def _is_daemon_config(path: Path) -> bool:
    # daemon.json is a common name; only Docker's own directories (/etc/docker, ~/.config/docker
    # for rootless) hold the engine's.
    return path.name == "daemon.json" and path.parent.name == "docker"


def discover(root: Path) -> ContainerFiles:
    """The container files under ``root``; a file root is taken as what its name says it is."""
    found = ContainerFiles()
    if root.is_file():
        _classify_file(root, found)
        return found
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRECTORIES)
        here = Path(directory)
        for name in sorted(names):
            path = here / name
            if is_dockerfile(name):
                found.dockerfiles.append(path)
            elif _is_daemon_config(path):
                found.daemon_configs.append(path)
        # Every base file present is a project (`-f` can select any of them); an override file
        # without a base is a fragment Compose never loads alone.
        for name in BASE_FILE_NAMES:
            if name in names:
                found.compose_projects.append(project_files(here / name))
    return found


def _classify_file(path: Path, found: ContainerFiles) -> None:
    name = path.name
    if is_dockerfile(name):
        found.dockerfiles.append(path)
    elif name == "daemon.json":
        found.daemon_configs.append(path)
    elif name in BASE_FILE_NAMES:
        found.compose_projects.append(project_files(path))
    elif name in OVERRIDE_FILE_NAMES:
        bases = [path.parent / b for b in BASE_FILE_NAMES if (path.parent / b).is_file()]
        found.compose_projects.append([bases[0], path] if bases else [path])
