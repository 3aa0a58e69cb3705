"""Which files each export format writes, and writing them (atomically) into one directory.

Layout of ``report FINDINGS --out DIR``: report.html, findings.json, report.json, findings.csv,
requirements.csv, findings.sarif, junit.xml, ocsf.json.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from scanners.errors import InputError
from scanners.fsutil import write_text_atomic
from scanners.report.export_csv import render_findings_csv, render_requirements_csv
from scanners.report.export_html import render_html
from scanners.report.export_json import render_findings_json, render_report_json
from scanners.report.export_junit import render_junit
from scanners.report.export_ocsf import render_ocsf
from scanners.report.export_sarif import render_sarif
from scanners.report.model import Report

Renderer = Callable[[Report], str]

FORMATS: dict[str, tuple[tuple[str, Renderer], ...]] = {
    "html": (("report.html", render_html),),
    "json": (("findings.json", render_findings_json), ("report.json", render_report_json)),
    "csv": (("findings.csv", render_findings_csv), ("requirements.csv", render_requirements_csv)),
    "sarif": (("findings.sarif", render_sarif),),
    "junit": (("junit.xml", render_junit),),
    "ocsf": (("ocsf.json", render_ocsf),),
}


def parse_formats(value: str | Iterable[str]) -> list[str]:
    """Formats from "html,csv" or a list; every format for "all". Unknown names are an input error."""
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen: list[str] = []
    for name in (n.strip().lower() for n in names):
        if not name:
            continue
        if name == "all":
            return list(FORMATS)
        if name not in FORMATS:
            raise InputError(f"unknown format {name!r} (choose from {', '.join(FORMATS)} or all)")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise InputError("no export format given")
    return chosen


def planned_paths(out_dir: Path, formats: Iterable[str]) -> list[Path]:
    """The files ``write_exports`` would write, to check them before anything is written."""
    return [out_dir / filename for name in parse_formats(formats) for filename, _ in FORMATS[name]]


def write_exports(report: Report, out_dir: Path, formats: Iterable[str]) -> list[Path]:
    """Render and write each format's files into ``out_dir``; returns the paths written.

    Each file is written as soon as it is rendered, so should one fail the others are kept.
    """
    chosen = parse_formats(formats)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory")
    written: list[Path] = []
    for name in chosen:
        for filename, render in FORMATS[name]:
            path = out_dir / filename
            write_text_atomic(path, render(report))
            written.append(path)
    return written
