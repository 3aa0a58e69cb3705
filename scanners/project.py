"""Locate the Ansible project (playbooks, roles, library) that preaudit drives."""

from __future__ import annotations

import os
from pathlib import Path

from scanners.errors import EnvironmentProblem


def project_root() -> Path:
    """The directory holding playbooks/ and roles/: $PREAUDIT_PROJECT_DIR, the source checkout, or cwd."""
    candidates = []
    if os.environ.get("PREAUDIT_PROJECT_DIR"):
        candidates.append(Path(os.environ["PREAUDIT_PROJECT_DIR"]))
    candidates += [Path(__file__).resolve().parent.parent, Path.cwd()]
    for candidate in candidates:
        if (candidate / "playbooks").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise EnvironmentProblem(
        "cannot find the preaudit Ansible project (playbooks/ and roles/); set PREAUDIT_PROJECT_DIR"
    )
