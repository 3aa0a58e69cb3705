"""Import the project's Ansible modules and module_utils in unit tests, as Ansible would package them.

A module imports its shared code as ``ansible.module_utils.<name>``; Ansible finds it in
``module_utils/`` (ansible.cfg) when it builds the module's payload. Here the same files are
registered under those names so the modules' functions can be called directly.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_file(name: str, path: Path) -> ModuleType:
    """Any project file (a filter plugin, say) as the module ``name``, without putting its folder on sys.path."""
    return _load(name, path)


def module_utils(name: str) -> ModuleType:
    """``module_utils/<name>.py`` as ``ansible.module_utils.<name>``."""
    return _load(f"ansible.module_utils.{name}", ROOT / "module_utils" / f"{name}.py")


def library(name: str, uses: tuple[str, ...] = ()) -> ModuleType:
    """``library/<name>.py`` after registering the module_utils it imports."""
    for dependency in uses:
        module_utils(dependency)
    return _load(f"preaudit_library_{name}", ROOT / "library" / f"{name}.py")
