"""The scanner finds the platform on each host; it never assumes the lab's layout. No scanner
default, catalog check or scanner-side file names a lab path (the lab itself, scanners/lab/ and
`preaudit lab`, builds those paths and may name them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scanners.catalog import default_catalog
from scanners.cli import scan_cmd
from scanners.host_scan import DEFAULT_HOST_FILES
from scanners.pipeline import ScanOptions
from tests.unit.module_loader import module_utils

ROOT = Path(__file__).resolve().parents[2]
# The bare name covers /opt/montecarlo, /etc/ssl/montecarlo, the service and its nginx site.
LAB_NAMES = ("/opt/montecarlo", "/etc/ssl/montecarlo", "montecarlo")
LAB_ONLY = (ROOT / "scanners" / "lab", ROOT / "scanners" / "cli" / "lab_cmd.py")
TARGET_SIDE = ("library/host_audit.py", "library/host_files.py", "module_utils/preaudit_discovery.py")


def lab_names_in(text: str) -> list[str]:
    return [name for name in LAB_NAMES if name in text.lower()]


def scanner_side_files() -> list[Path]:
    files = [p for p in (ROOT / "scanners").rglob("*") if p.is_file() and p.suffix in (".py", ".yml", ".json", ".j2")]
    files = [p for p in files if not any(p == lab or lab in p.parents for lab in LAB_ONLY)]
    return sorted(files) + [ROOT / p for p in TARGET_SIDE] + [ROOT / "playbooks" / "scan.yml"]


def test_no_scanner_default_names_a_lab_path() -> None:
    discovery = module_utils("preaudit_discovery")
    defaults: dict[str, object] = {
        "DEFAULT_HOST_FILES": list(DEFAULT_HOST_FILES),
        "ScanOptions.host_files": list(ScanOptions(out=Path("out")).host_files),
        "discovery options": repr(discovery.Options()),
        "discovery constants": [discovery.UNIT_DIRS, discovery.NGINX_CONF, discovery.COMPOSE_DIR],
    }
    parser = argparse.ArgumentParser()
    scan_cmd.register(parser.add_subparsers())
    defaults["preaudit scan defaults"] = vars(parser.parse_args(["scan"]))
    named = {what: lab_names_in(json.dumps(value, default=str)) for what, value in defaults.items()}
    assert not any(named.values()), named


def test_no_catalog_check_names_a_lab_path() -> None:
    named = {c.id: lab_names_in(json.dumps(c.to_dict())) for c in default_catalog()}
    assert not any(named.values()), {cid: names for cid, names in named.items() if names}


def test_no_scanner_side_file_names_a_lab_path() -> None:
    named = {str(p.relative_to(ROOT)): lab_names_in(p.read_text(encoding="utf-8")) for p in scanner_side_files()}
    assert len(named) > 50, "the scanner's files were not found"
    assert not any(named.values()), {path: names for path, names in named.items() if names}


def role_files() -> list[Path]:
    """What decides what a role does on a host: its defaults, variables, tasks, templates and specs."""
    parts = ("defaults", "vars", "tasks", "templates", "handlers", "meta")
    roles = ROOT / "roles"
    return sorted(
        p for p in roles.rglob("*") if p.is_file() and p.relative_to(roles).parts[1:2] in [(d,) for d in parts]
    )


def test_no_role_default_task_or_template_names_a_lab_path() -> None:
    named = {str(p.relative_to(ROOT)): lab_names_in(p.read_text(encoding="utf-8")) for p in role_files()}
    assert len(named) > 40, "the roles' files were not found"
    assert not any(named.values()), {path: names for path, names in named.items() if names}
