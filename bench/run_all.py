"""Every benchmark in one run, with the load average around each, then the ratios together.

1. ``bench/converge.py``: converge and re-run of ``site.yml`` on 1, 3 and 8 fresh lab hosts, lab
   and minimal variants;
2. ``bench/host_audit.py``: the host audit against ``lynis audit system --quick`` on the same
   host, and a scan of the fleet cold and warm;
3. ``bench/code_scan.py``: the code, secrets and dependency scans against bandit, detect-secrets
   and pip-audit run one after another.

The lab benchmarks share one isolated lab (``PREAUDIT_LAB_DIR``, ``PREAUDIT_LAB_PREFIX``; never
the default lab). Run as root, when ``uptime`` shows a low load (the machine is shared):

    sudo PREAUDIT_LAB_DIR=/var/tmp/lab-bench PREAUDIT_LAB_PREFIX=bench .venv/bin/python bench/run_all.py

Options: ``--only converge,host_audit,code_scan``; ``--sizes`` and ``--repeat`` pass to the
converge benchmark. The exit status is 1 when a benchmark failed to run (not when a target is
missed: these are measurements, not tests).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# Lines worth repeating in the closing summary: ratios, targets and verdicts.
KEY_LINE = re.compile(r"target|[0-9]x\b|\b(cold|warm) / tools =|lynis|per host", re.IGNORECASE)


@dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    exit_code: int | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    key_lines: list[str] = field(default_factory=list)
    note: str = ""


def loads() -> tuple[float, float, float]:
    return os.getloadavg()


def fmt(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def run(name: str, argv: list[str]) -> Outcome:
    outcome = Outcome(name, load_before=loads())
    print(f"\n=== {name}: {' '.join(argv[1:])}  (load {fmt(outcome.load_before)})", flush=True)
    started = time.monotonic()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if KEY_LINE.search(line):
                outcome.key_lines.append(line.strip())
        outcome.exit_code = proc.wait()
    outcome.seconds = time.monotonic() - started
    outcome.load_after = loads()
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="converge,host_audit,code_scan", help="benchmarks to run (comma-separated)")
    parser.add_argument("--sizes", default="1,3,8", help="fleet sizes of the converge benchmark")
    parser.add_argument("--repeat", default="3", help="rounds of the converge benchmark (its median is reported)")
    parser.add_argument("--variants", default="lab,minimal", help="lab host variants of the converge benchmark")
    parser.add_argument("--audit-hosts", default="2", help="hosts of the host audit benchmark")
    args = parser.parse_args()
    lab_dir = os.environ.get("PREAUDIT_LAB_DIR", "/var/tmp/preaudit-bench-lab")
    prefix = os.environ.get("PREAUDIT_LAB_PREFIX", "bench")
    if Path(lab_dir) == Path("/var/lib/preaudit/lab"):
        raise SystemExit("bench: refusing to run in the default lab; set PREAUDIT_LAB_DIR to a lab of its own")
    env_note = f"lab {lab_dir}, prefix {prefix}"
    plans = {
        "converge": [
            str(BENCH / "converge.py"),
            "--sizes",
            args.sizes,
            "--repeat",
            args.repeat,
            "--variants",
            args.variants,
        ],
        "host_audit": [
            str(BENCH / "host_audit.py"),
            *("--lab-dir", lab_dir, "--prefix", prefix, "--hosts", args.audit_hosts, "--down"),
        ],
        "code_scan": [str(BENCH / "code_scan.py")],
    }
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(plans))
    if unknown:
        raise SystemExit(f"bench: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(plans)}")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  cpus {os.cpu_count()}  load {fmt(loads())}  {env_note}")
    outcomes = []
    for name in wanted:
        argv = plans[name]
        if not Path(argv[0]).exists():
            outcomes.append(Outcome(name, note=f"not run: {Path(argv[0]).name} is not in this tree"))
            print(f"\n=== {name}: {outcomes[-1].note} (it comes with the scan pipeline)", flush=True)
            continue
        outcomes.append(run(name, [sys.executable, *argv]))
    print("\n=== summary")
    for outcome in outcomes:
        if outcome.note:
            print(f"{outcome.name}: {outcome.note}")
            continue
        status = "ok" if outcome.exit_code == 0 else f"exit {outcome.exit_code}"
        print(
            f"{outcome.name}: {outcome.seconds:.0f} s, {status}, "
            f"load {fmt(outcome.load_before)} -> {fmt(outcome.load_after)}"
        )
        for line in outcome.key_lines:
            print(f"  {line}")
    return 0 if all(o.exit_code in (0, None) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
