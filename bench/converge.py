"""Benchmark: converge and re-run of the hardening playbook on 1, 3 and 8 fresh lab hosts, of each
host variant asked for (``--variants lab,minimal``: the lab image, a minimal Debian host).

For each fleet size N: give hosts 1..N a fresh disk (``lab reset``), time ``preaudit harden``'s
run of ``site.yml`` on them (the *converge*), then time it again (the *re-run*, which should
change nothing). Prints seconds, the changed-task count of each run, the load average around
each measurement, the ratios N-host / 1-host, and where the time goes in the largest fresh run
(per-task durations from ansible-runner's events).

Targets on the development machine (2 cores shared): one fresh host < 30 s, its re-run < 10 s,
8 hosts < 3x the one-host time.

"cpus busy" is the share of the machine's CPU time that was busy during a run (from /proc/stat):
the lab hosts run on the controller's own cores, so a fleet run near 100% is bound by the
machine, not by Ansible; other users' load counts too.

The benchmark resets hosts, so it runs only in a lab of its own (never the default one):

    sudo PREAUDIT_LAB_DIR=/var/tmp/lab-bench PREAUDIT_LAB_PREFIX=bench \\
        .venv/bin/python bench/converge.py [--sizes 1,3,8] [--variants lab,minimal] [--repeat 3] [--keep] [--json OUT]

Each figure reported is the median of the rounds (``--repeat``), never the best one.

It boots the hosts it needs (``lab up``) and, unless ``--keep``, removes them at the end if it
booted them. ``forks`` comes from ansible.cfg (25), above the largest fleet size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanners.harden import EventCollector, HardenOptions, run_harden
from scanners.lab.fleet import Fleet
from scanners.lab.settings import LabSettings

DEFAULT_LAB_DIR = Path("/var/tmp/preaudit-bench-lab")
DEFAULT_PREFIX = "bench"
TARGET_FRESH = 30.0
TARGET_RERUN = 10.0
TARGET_SCALE = 3.0


@dataclass
class Measurement:
    variant: str
    hosts: int
    kind: str
    seconds: float
    changed: int
    exit_code: int
    load_before: float
    load_after: float
    cpu_busy: float
    controller_cpu: float
    run_dir: str


@dataclass
class Results:
    measurements: list[Measurement] = field(default_factory=list)
    profile: list[dict[str, Any]] = field(default_factory=list)

    def median(self, variant: str, hosts: int, kind: str) -> float:
        return statistics.median(
            m.seconds for m in self.measurements if (m.variant, m.hosts, m.kind) == (variant, hosts, kind)
        )


def load1() -> float:
    return os.getloadavg()[0]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs: the lab hosts run on the controller's cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def settings_from_env() -> LabSettings:
    lab_dir = Path(os.environ.get("PREAUDIT_LAB_DIR", str(DEFAULT_LAB_DIR)))
    if lab_dir == Path("/var/lib/preaudit/lab"):
        raise SystemExit("bench: refusing to reset hosts of the default lab; set PREAUDIT_LAB_DIR to a lab of its own")
    return LabSettings.isolated(lab_dir, os.environ.get("PREAUDIT_LAB_PREFIX", DEFAULT_PREFIX))


def timed_run(
    fleet: Fleet, variant: str, names: list[str], kind: str, work: Path
) -> tuple[Measurement, EventCollector]:
    options = HardenOptions(inventory=fleet.settings.inventory, limit=",".join(names))
    run_dir = work / f"{time.strftime('%H%M%S')}-{len(names)}-{kind}-{time.monotonic_ns()}"
    before = load1()
    busy0, total0 = cpu_times()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run = run_harden(options, run_dir, hosts=names)
    seconds = time.monotonic() - started
    busy1, total1 = cpu_times()
    cpu_busy = (busy1 - busy0) / max(1, total1 - total0)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ansible-playbook, its workers and ssh clients: the controller's side of the run.
    controller_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    changed = sum(h["changed"] for h in run.summary["hosts"].values())
    measurement = Measurement(
        variant,
        len(names),
        kind,
        seconds,
        changed,
        run.exit_code,
        before,
        load1(),
        cpu_busy,
        controller_cpu,
        str(run_dir),
    )
    note = "" if run.exit_code == 0 else f"  EXIT {run.exit_code}: {run.summary['result']}"
    print(
        f"  {variant:<8} {len(names)} host(s) {kind:<8} {seconds:7.2f} s  changed tasks {changed:4d}  "
        f"load {before:.2f} -> {measurement.load_after:.2f}  cpus busy {cpu_busy:4.0%}  "
        f"controller cpu {controller_cpu:5.1f} s{note}",
        flush=True,
    )
    return measurement, run.collector


def profile(collector: EventCollector, top: int = 12) -> list[dict[str, Any]]:
    """The tasks that cost most: longest single-host duration and the sum over hosts."""
    rows = sorted(collector.timings.values(), key=lambda t: t.longest, reverse=True)[:top]
    return [
        {"task": t.name, "hosts": t.hosts, "longest": round(t.longest, 2), "total": round(t.total, 2)} for t in rows
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,3,8", help="fleet sizes (default 1,3,8)")
    parser.add_argument("--variants", default="lab", help="lab host variants, each measured in turn (default lab)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="measure each size this many times (the median is reported)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the hosts running at the end")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if os.geteuid() != 0:
        raise SystemExit("bench: the lab needs root")
    settings = settings_from_env()
    fleet = Fleet(settings)
    running = len(fleet.state().hosts)
    booted_here = not running
    # `up N` keeps exactly N hosts: never shrink a lab that has more.
    count = max(max(sizes), running)
    print(f"lab: {settings.lab_dir} prefix {settings.prefix}; {count} host(s)", flush=True)
    names = [f"{settings.prefix}-{i}" for i in range(1, max(sizes) + 1)]
    work = settings.lab_dir / "bench-runs"
    results = Results()
    print(f"cpus {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for variant in variants:
            fleet.up(count, variants=[variant])
            for round_no in range(1, args.repeat + 1):
                print(f"{variant}: round {round_no}", flush=True)
                for size in sizes:
                    subset = names[:size]
                    for name in subset:
                        fleet.reset_host(name)
                    fresh, collector = timed_run(fleet, variant, subset, "converge", work)
                    rerun, _ = timed_run(fleet, variant, subset, "re-run", work)
                    results.measurements += [fresh, rerun]
                    if size == max(sizes) and variant == variants[0]:
                        results.profile = profile(collector)
    finally:
        if booted_here and not args.keep:
            fleet.down()
    for variant in variants:
        report(results, variant, sizes)
    print_profile(results, max(sizes))
    if args.json:
        args.json.write_text(json.dumps({"measurements": [asdict(m) for m in results.measurements],
                                         "profile": results.profile}, indent=2))  # fmt: skip
    return 0 if all(m.exit_code == 0 for m in results.measurements) else 1


def report(results: Results, variant: str, sizes: list[int]) -> None:
    one = sizes[0]
    print(f"\n{variant}: median of the rounds:")
    print(f"  {'hosts':>5} {'converge':>9} {'re-run':>8} {'converge/1':>11} {'re-run/1':>9}")
    for size in sizes:
        fresh, rerun = results.median(variant, size, "converge"), results.median(variant, size, "re-run")
        print(
            f"  {size:>5} {fresh:8.2f}s {rerun:7.2f}s {fresh / results.median(variant, one, 'converge'):10.2f}x "
            f"{rerun / results.median(variant, one, 're-run'):8.2f}x"
        )
    mine = [m for m in results.measurements if m.variant == variant]
    loads = [m.load_before for m in mine]
    print(
        f"  load average (1 min) at the start of the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f}"
    )
    if one == 1:
        fresh1, rerun1 = results.median(variant, 1, "converge"), results.median(variant, 1, "re-run")
        print(f"  one host: converge {fresh1:.1f} s (target < {TARGET_FRESH:.0f} s), re-run {rerun1:.1f} s "
              f"(target < {TARGET_RERUN:.0f} s)")  # fmt: skip
        big = max(sizes)
        if big > 1:
            print(
                f"  {big} hosts / 1 host: converge {results.median(variant, big, 'converge') / fresh1:.2f}x, "
                f"re-run {results.median(variant, big, 're-run') / rerun1:.2f}x (target < {TARGET_SCALE:.0f}x)"
            )
    unchanged = [m for m in mine if m.kind == "re-run" and m.changed]
    if unchanged:
        print("  re-runs that still changed something (not idempotent): " + ", ".join(
            f"{m.hosts} host(s): {m.changed} task(s)" for m in unchanged))  # fmt: skip
    failed = [m for m in mine if m.exit_code != 0]
    if failed:
        print(
            "  runs that did not converge: "
            + ", ".join(f"{m.hosts} host(s) {m.kind}: exit {m.exit_code}" for m in failed)
        )


def print_profile(results: Results, big: int) -> None:
    if results.profile:
        print(f"\nwhere the time goes in the {big}-host converge (longest on one host / sum over hosts):")
        for row in results.profile:
            print(f"  {row['longest']:6.2f} s {row['total']:7.2f} s  {row['task']}")


if __name__ == "__main__":
    sys.exit(main())
