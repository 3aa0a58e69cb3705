"""Benchmark: the host audit against `lynis audit system --quick` on the same lab host, and
`preaudit scan` of the lab fleet cold and warm.

What is measured, on an isolated lab (``--lab-dir``, ``--prefix``; booted if it is not up):

1. **Host audit.** One ansible-runner run of ``playbooks/scan.yml`` over the fleet with only the
   host audit (every host check of the catalog, one module call per host), ``--rounds`` times.
   Per host: the task as Ansible reports it (module transfer and run over SSH with pipelining
   and ControlPersist, i.e. what a scan pays per host) and the checks alone as the module
   measures them; plus the wall time of the whole ansible-runner run (ansible-playbook start-up
   included) for the fleet. Round 1 is cold (no SSH master connection yet).
2. **lynis.** Debian's lynis package (from the controller's apt cache, else ``apt-get
   download``) is copied into the first host's disk and installed there with ``dpkg -i`` (the
   lab hosts have no network), then ``lynis audit system --quick`` runs on the host over SSH
   with sudo, timed from the controller (SSH included, as for the host audit). lynis is removed
   again afterwards (``dpkg --purge``), so the host is as before apart from lynis' log files.
3. **Fleet scan.** ``preaudit scan --inventory ...`` (every scanner, the hosts' files, their
   TLS ports) twice: cold (empty result caches for the code and secrets scanners) and warm.
   ``--code DIR`` adds a local tree to both scans.

Targets (not a timed test): host audit under 3 s per host, and at least 10x faster than lynis.

Run as root: ``.venv/bin/python bench/host_audit.py [--hosts 2] [--lab-dir DIR] [--prefix pc]
[--rounds 3] [--code DIR] [--down]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scanners.catalog import default_catalog
from scanners.host_scan import HostCallbacks, HostOutcome, load_inventory, run_host_scan
from scanners.lab.fleet import Fleet, HostState
from scanners.lab.settings import LabSettings
from scanners.vulndb import import_snapshot

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PER_HOST_TARGET = 3.0
RATIO_TARGET = 10.0


def ssh(fleet: Fleet, host: HostState, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh", "-i", str(fleet.settings.ssh_key), "-p", str(host.ssh_port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "LogLevel=ERROR", f"{Fleet.ADMIN_USER}@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def lynis_package(workdir: Path) -> Path:
    cached = sorted(Path("/var/cache/apt/archives").glob("lynis_*_all.deb"))
    if cached:
        return cached[-1]
    subprocess.run(["apt-get", "download", "lynis"], cwd=workdir, check=True, capture_output=True)
    return sorted(workdir.glob("lynis_*.deb"))[-1]


def bench_host_audit(inventory: Path, rounds: int, workdir: Path) -> list[dict[str, HostOutcome]]:
    catalog = default_catalog()
    hosts = load_inventory(inventory)
    results = []
    for n in range(1, rounds + 1):
        private = workdir / f"audit-{n}"
        started = time.monotonic()
        result = run_host_scan(
            catalog,
            inventory,
            hosts,
            private,
            HostCallbacks(emit=lambda _h, _f: None),
            discover_tls=True,
        )
        wall = time.monotonic() - started
        shutil.rmtree(private, ignore_errors=True)
        errors = [o.error for o in result.hosts.values() if o.error]
        if errors:
            raise SystemExit(f"bench: host audit failed: {errors}")
        per_host = ", ".join(
            f"{name} task {o.audit_seconds:.2f}s (checks {o.module_seconds:.2f}s)" for name, o in result.hosts.items()
        )
        print(f"host audit round {n} ({'cold' if n == 1 else 'warm'}): fleet run {wall:.2f}s; {per_host}")
        results.append(result.hosts)
    return results


def bench_lynis(fleet: Fleet, host: HostState, workdir: Path) -> float:
    package = lynis_package(workdir)
    target = Path(host.root) / "var" / "tmp" / package.name
    shutil.copy2(package, target)
    installed = ssh(fleet, host, f"sudo dpkg -i /var/tmp/{package.name}")
    if installed.returncode != 0:
        raise SystemExit(f"bench: installing lynis on {host.name} failed: {installed.stderr.strip()[-500:]}")
    try:
        started = time.monotonic()
        run = ssh(fleet, host, "sudo lynis audit system --quick --no-colors")
        seconds = time.monotonic() - started
        if run.returncode != 0:
            raise SystemExit(f"bench: lynis failed on {host.name}: {run.stderr.strip()[-500:]}")
        tests = [line for line in run.stdout.splitlines() if "Tests performed" in line]
        print(f"lynis audit system --quick on {host.name}: {seconds:.1f}s ({tests[0].strip() if tests else '?'})")
        return seconds
    finally:
        ssh(fleet, host, f"sudo dpkg --purge lynis >/dev/null; sudo rm -f /var/tmp/{package.name}")


def bench_fleet_scan(inventory: Path, code: Path | None, workdir: Path) -> list[float]:
    vulndb = workdir / "vulndb"
    import_snapshot(REPO / "tests" / "data" / "advisories", vulndb)
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "cache"))
    argv = [str(BIN / "preaudit"), "scan", "--inventory", str(inventory), "--vuln-db", str(vulndb), "--no-progress"]
    if code is not None:
        argv += ["--code", str(code)]
    times = []
    for label in ("cold", "warm"):
        out = workdir / f"scan-{label}"
        started = time.monotonic()
        result = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, env=env, check=False)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"bench: preaudit scan failed ({result.returncode}): {result.stderr.strip()[-1000:]}")
        count = sum(1 for _ in (out / "findings.jsonl").open())
        print(f"fleet scan {label}: {seconds:.1f}s, {count} findings")
        times.append(seconds)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/lab-pc"))
    parser.add_argument("--prefix", default="pc")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, help="also scan this local tree in the fleet scans")
    parser.add_argument("--down", action="store_true", help="stop the lab at the end")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (the lab needs systemd-nspawn)")

    fleet = Fleet(LabSettings.isolated(args.lab_dir, args.prefix), progress=lambda m: print(f"lab: {m}"))
    state = fleet.up(args.hosts)
    inventory = fleet.settings.inventory
    workdir = Path(tempfile.mkdtemp(prefix="preaudit-bench-"))
    try:
        rounds = bench_host_audit(inventory, args.rounds, workdir)
        first = sorted(state.hosts)[0]
        lynis = bench_lynis(fleet, state.hosts[first], workdir)
        scans = bench_fleet_scan(inventory, args.code, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.down:
            fleet.down()

    warm = rounds[1:] or rounds
    task = statistics.median(o.audit_seconds or 0.0 for r in warm for o in r.values())
    worst = max(o.audit_seconds or 0.0 for r in rounds for o in r.values())
    module = statistics.median(o.module_seconds or 0.0 for r in warm for o in r.values())
    same_host = statistics.median(r[first].audit_seconds or 0.0 for r in warm)
    ratio = lynis / same_host if same_host else float("inf")
    print()
    print(f"host audit per host: median {task:.2f}s warm (checks alone {module:.2f}s), worst {worst:.2f}s "
          f"[target < {PER_HOST_TARGET:.0f}s]")  # fmt: skip
    print(f"lynis --quick on {first}: {lynis:.1f}s; host audit on {first}: {same_host:.2f}s; "
          f"ratio {ratio:.0f}x [target >= {RATIO_TARGET:.0f}x]")  # fmt: skip
    print(f"fleet scan of {len(state.hosts)} hosts: cold {scans[0]:.1f}s, warm {scans[1]:.1f}s")
    ok = worst < PER_HOST_TARGET and ratio >= RATIO_TARGET
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
