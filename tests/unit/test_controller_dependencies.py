"""The roles' filter plugins load on a controller with ansible-core and PyYAML only.

An execution environment (execution-environment.yml) or a plain Ansible controller runs the
playbooks with the project checkout but without preaudit's scanner dependencies (the Docker
SDK, dockerfile-parse, bandit, sslyze...). The filters import parts of the `scanners` package, so
they are loaded here in a fresh interpreter in which every other third-party module is missing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ansible-core's own dependencies, and PyYAML (which execution-environment.yml lists).
CONTROLLER = {
    "ansible",
    "yaml",
    "_yaml",
    "jinja2",
    "markupsafe",
    "cryptography",
    "_cffi_backend",
    "packaging",
    "resolvelib",
    "cffi",
    "pycparser",
}
# Any import outside the standard library, the controller's packages and the project fails.
BARE_CONTROLLER = """
import importlib.abc, importlib.util, sys
allowed = set(sys.argv[1].split(",")) | set(sys.stdlib_module_names) | {"scanners", "filter_plugins"}
class ControllerOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (not on a bare controller)")
        return None
sys.meta_path.insert(0, ControllerOnly())
sys.path.insert(0, ".")
"""
LOAD_PLUGIN = """
spec = importlib.util.spec_from_file_location("plugin", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(sorted(module.FilterModule().filters()))
"""


def on_a_bare_controller(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", BARE_CONTROLLER + code, ",".join(sorted(CONTROLLER)), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("plugin", sorted(p.name for p in (ROOT / "filter_plugins").glob("*.py")))
def test_filter_plugin_loads_with_ansible_core_and_pyyaml_only(plugin: str) -> None:
    run = on_a_bare_controller(LOAD_PLUGIN, f"filter_plugins/{plugin}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert ast.literal_eval(run.stdout), f"{plugin} defines no filters"


def test_the_loader_refuses_what_a_bare_controller_lacks() -> None:
    run = on_a_bare_controller("import docker\n")
    assert run.returncode != 0 and "not on a bare controller" in run.stderr
