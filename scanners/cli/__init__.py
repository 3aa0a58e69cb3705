"""The `preaudit` command: subcommands, exit codes and the one-line error convention.

Exit codes: 0 success, 1 findings at or above the failure threshold, 2 usage or input
error, 3 runtime or environment error, 4 regressions found (`history record
--fail-on-regression`), 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from scanners import __version__
from scanners.cli import catalog_cmd, harden_cmd, history_cmd, lab_cmd, report_cmd, scan_cmd, vulndb_cmd
from scanners.errors import EXIT_RUNTIME, EXIT_USAGE, PreauditError

# Each module adds its subcommands; adding a subcommand never touches another module.
SUBCOMMAND_MODULES = (lab_cmd, harden_cmd, scan_cmd, catalog_cmd, vulndb_cmd, report_cmd, history_cmd)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints the whole usage block; one line is the project convention.
        self.exit(EXIT_USAGE, f"preaudit: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="preaudit",
        description="Harden simulation hosts and produce a pre-audit findings report (SOC 2, ISO 27001, CIS).",
    )
    parser.add_argument("--version", action="version", version=f"preaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in SUBCOMMAND_MODULES:
        module.register(sub)
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI timeout, `systemctl stop`, `timeout`) ends a command like Ctrl-C does.

    Every command already turns Ctrl-C into a clean end that writes what it collected; SIGTERM's
    default would kill the process and lose it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            return int(args.func(args) or 0)
    except PreauditError as exc:
        print(f"preaudit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A full disk, a vanished directory, a permission problem: the machine's, not a bug.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"preaudit: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("preaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
