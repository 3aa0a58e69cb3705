"""`preaudit vulndb import|sync|status`: manage the offline vulnerability database."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scanners import vulndb

_LOCATION_HELP = f"database directory or file (default: ${vulndb.VULNDB_ENV} or $XDG_DATA_HOME/preaudit/vulndb)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("vulndb", help="import, download and show the offline vulnerability database")
    actions = parser.add_subparsers(dest="vulndb_command", metavar="ACTION")
    actions.required = True

    imp = actions.add_parser(
        "import", help="import a PyPA advisory-database tarball or directory, or an OSV zip export"
    )
    imp.add_argument("source", type=Path, metavar="FILE|DIR")
    imp.add_argument("--vuln-db", type=Path, help=_LOCATION_HELP)
    imp.set_defaults(func=_import)

    sync = actions.add_parser("sync", help="download the current OSV PyPI export (needs the network)")
    sync.add_argument("--vuln-db", type=Path, help=_LOCATION_HELP)
    sync.add_argument("--url", default=vulndb.OSV_PYPI_EXPORT_URL, help="where to download the OSV zip export from")
    sync.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    sync.set_defaults(func=_sync)

    status = actions.add_parser("status", help="show the snapshot in use")
    status.add_argument("--vuln-db", type=Path, help=_LOCATION_HELP)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)


def _print_info(verb: str, info: vulndb.SnapshotInfo) -> None:
    print(f"{verb} {info.label()}")
    print(f"  packages: {info.packages}, imported {info.imported_at}, database {info.path}")


def _import(args: argparse.Namespace) -> int:
    _print_info("imported", vulndb.import_snapshot(args.source, args.vuln_db))
    return 0


def _sync(args: argparse.Namespace) -> int:
    _print_info("downloaded and imported", vulndb.sync(args.vuln_db, url=args.url, timeout=args.timeout))
    return 0


def _status(args: argparse.Namespace) -> int:
    info = vulndb.status(args.vuln_db)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        _print_info("in use:", info)
    return 0
