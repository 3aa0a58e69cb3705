"""`preaudit catalog list|show`: browse the control catalog."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from scanners.catalog import default_catalog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = sub.add_parser("catalog", help="list and show the controls of the catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", metavar="ACTION")
    catalog_sub.required = True
    list_cmd = catalog_sub.add_parser("list", help="one line per control")
    list_cmd.add_argument("--area", help="only controls of this area (ssh, os, tls, ...)")
    list_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    list_cmd.set_defaults(func=_list)
    show = catalog_sub.add_parser("show", help="everything about one control")
    show.add_argument("control_id")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    controls = [c for c in catalog if not args.area or c.area == args.area]
    if args.json:
        print(json.dumps([c.to_dict() for c in controls], indent=2))
        return 0
    table = Table(title=f"preaudit catalog {catalog.version} ({len(controls)} controls)")
    for column in ("id", "severity", "title", "role", "references"):
        table.add_column(column)
    for c in controls:
        refs = "; ".join(f"{k} {','.join(v)}" for k, v in c.references.items())
        table.add_row(c.id, c.severity.value, c.title, c.role or "-", refs)
    Console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    control = default_catalog().get(args.control_id)
    print(json.dumps(control.to_dict(), indent=2))
    return 0
