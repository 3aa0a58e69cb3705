"""`preaudit lab up|down|status|doctor|reset`: the fleet of real simulation hosts."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scanners.errors import EXIT_RUNTIME
from scanners.lab import image
from scanners.lab.doctor import fix_command, run_checks
from scanners.lab.fleet import PLATFORMS, Fleet
from scanners.lab.settings import LabSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="boot, inspect and stop the lab fleet of simulation hosts")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    lab_sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--inventory", type=Path, help="inventory file to write (default inventories/lab/hosts.yml)")
    common.add_argument("--prefix", help="host name prefix (default sim; hosts are PREFIX-1..N)")

    up = lab_sub.add_parser("up", parents=[common], help="build the image if needed and boot N hosts")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument(
        "--platforms",
        type=_platform_list,
        default=["nspawn"],
        help=f"comma-separated platforms the hosts run on, in turn ({', '.join(PLATFORMS)}; default nspawn)",
    )
    up.add_argument(
        "--variants",
        type=_variant_list,
        default=[image.DEFAULT_VARIANT],
        help=f"comma-separated image variants of the hosts, in turn ({', '.join(image.VARIANTS)}; "
        f"default {image.DEFAULT_VARIANT})",
    )
    up.set_defaults(func=_up)
    down = lab_sub.add_parser("down", parents=[common], help="stop the hosts and remove their disks")
    down.set_defaults(func=_down)
    status = lab_sub.add_parser("status", parents=[common], help="show the hosts and their ports")
    status.set_defaults(func=_status)
    doctor = lab_sub.add_parser("doctor", help="check prerequisites and print the command that fixes them")
    doctor.set_defaults(func=_doctor)
    reset = lab_sub.add_parser("reset", parents=[common], help="give a host a fresh disk and reboot it")
    reset.add_argument("host")
    reset.set_defaults(func=_reset)


def _choice_list(text: str, known: tuple[str, ...]) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    if not chosen or set(chosen) - set(known):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(known)} (got {text!r})")
    return chosen


def _platform_list(text: str) -> list[str]:
    return _choice_list(text, PLATFORMS)


def _variant_list(text: str) -> list[str]:
    return _choice_list(text, tuple(image.VARIANTS))


def _fleet(args: argparse.Namespace, console: Console) -> Fleet:
    settings = LabSettings.from_env(inventory=args.inventory, prefix=args.prefix)
    return Fleet(settings, progress=lambda msg: console.print(f"[dim]lab:[/dim] {msg}"))


def _up(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    fleet = _fleet(args, console)
    fleet.up(args.hosts, args.platforms, args.variants)
    console.print(f"inventory: {fleet.settings.inventory}")
    _print_status(fleet)
    return 0


def _down(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    count = _fleet(args, console).down()
    console.print(f"lab: {count} host(s) stopped and removed")
    return 0


def _print_status(fleet: Fleet) -> int:
    rows = fleet.status()
    table = Table(title="lab hosts")
    for column in ("host", "platform", "variant", "state", "address", "ssh", "https"):
        table.add_column(column)
    for row in rows:
        state = "[green]running[/green]" if row["running"] else "[red]stopped[/red]"
        table.add_row(row["name"], row["platform"], row["variant"], state, row["address"], row["ssh"], row["https"])
    Console().print(table if rows else "lab: no hosts (run `preaudit lab up`)")
    return 0 if all(r["running"] for r in rows) else EXIT_RUNTIME


def _status(args: argparse.Namespace) -> int:
    return _print_status(_fleet(args, Console(stderr=True)))


def _reset(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    _fleet(args, console).reset_host(args.host)
    console.print(f"lab: {args.host} reset")
    return 0


def _doctor(_args: argparse.Namespace) -> int:
    console = Console()
    checks = run_checks()
    for check in checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {check.name:<15} {check.detail}")
    fix = fix_command(checks)
    if fix:
        console.print(f"\nfix: {fix}", soft_wrap=True)
    return 0 if all(c.ok for c in checks) else EXIT_RUNTIME
