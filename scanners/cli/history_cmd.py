"""`preaudit history ...` (record scans, scans and trends, a control over time, the audit period,
export/import) and `preaudit metrics` (Prometheus textfile): the arguments.

The work is in :mod:`scanners.cli.history_views`, imported only when one of these commands
runs: it pulls in SQLAlchemy, alembic and prometheus_client, which every other `preaudit`
command would otherwise pay for at start-up.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanners.errors import EXIT_REGRESSION

STORE_ENV_VAR = "PREAUDIT_STORE"  # the same as scanners.history.urls.ENV_VAR (a test keeps them equal)

_STORE_HELP = (
    "history store: a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
    f"(default: ${STORE_ENV_VAR}, else a SQLite file; see README)"
)


def _lazy(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from scanners.cli import history_views

        return history_views.ACTIONS[action](args)

    return run


def _options(default: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """--store, and the list options; ``default`` is None on `history` and SUPPRESS on its actions,
    so `history --store X ACTION` keeps X instead of the action resetting it."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", metavar="URL", default=default, help=_STORE_HELP)
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument(
        "--since", metavar="DATE", default=default, help="only scans started on or after DATE (YYYY-MM-DD or ISO time)"
    )
    listing.add_argument("--limit", type=int, metavar="N", default=default, help="only the N most recent scans")
    listing.add_argument("--json", action="store_true", default=default, help="machine-readable output")
    return store, listing


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top_store, top_listing = _options(None)
    store, listing = _options(argparse.SUPPRESS)
    history = sub.add_parser(
        "history",
        parents=[top_store, top_listing],
        help="scan history over the audit period: record scans, trends, a control over time, export",
        description="Without an action, lists the recorded scans (same as `history list`).",
    )
    history.set_defaults(func=_lazy("list"))
    actions = history.add_subparsers(dest="history_command", metavar="ACTION")

    actions.add_parser("list", parents=[store, listing], help="recorded scans and trends").set_defaults(
        func=_lazy("list")
    )

    record = actions.add_parser("record", parents=[store], help="record a findings document (one scan) in the store")
    record.add_argument("findings", type=Path, metavar="FINDINGS.json")
    record.add_argument("--bundle-signature", metavar="HEX", help="signature of the scan's signed report bundle")
    record.add_argument(
        "--fail-on-regression",
        action="store_true",
        help=f"exit {EXIT_REGRESSION} when a control that passed in its previous scan fails in this one",
    )
    record.set_defaults(func=_lazy("record"))

    control = actions.add_parser("control", parents=[store], help="one control over time: intervals, fixes, proof")
    control.add_argument("control_id", metavar="ID")
    control.add_argument("--since", metavar="DATE", help="only intervals that still held on or after DATE")
    control.add_argument("--host", metavar="PATTERN", help="only hosts matching this fnmatch pattern (e.g. 'sim-*')")
    control.add_argument("--json", action="store_true", help="machine-readable output")
    control.set_defaults(func=_lazy("control"))

    finding = actions.add_parser("finding", parents=[store], help="one finding's life: first and last seen, changes")
    finding.add_argument("fingerprint", metavar="FINGERPRINT", help="a fingerprint or a unique prefix (8+ digits)")
    finding.add_argument("--json", action="store_true", help="machine-readable output")
    finding.set_defaults(func=_lazy("finding"))

    period = actions.add_parser("period", parents=[store], help="requirements, regressions and trend over a period")
    period.add_argument("period", metavar="START..END", help="UTC dates, both included, e.g. 2026-06-01..2026-11-30")
    period.add_argument("--json", action="store_true", help="machine-readable output")
    period.set_defaults(func=_lazy("period"))

    export = actions.add_parser("export", parents=[store], help="write every scan to one JSON file for an auditor")
    export.add_argument("file", type=Path, metavar="FILE")
    export.set_defaults(func=_lazy("export"))

    imports = actions.add_parser("import", parents=[store], help="record every scan of an export (one transaction)")
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.set_defaults(func=_lazy("import"))

    metrics = sub.add_parser(
        "metrics", parents=[top_store], help="Prometheus metrics of the latest recorded scan (node_exporter textfile)"
    )
    metrics.add_argument("--out", type=Path, metavar="FILE", help="write atomically to FILE (e.g. .../preaudit.prom)")
    metrics.set_defaults(func=_lazy("metrics"))
