"""How long scan_tls takes for 1 and for N endpoints (real nginx servers on loopback, Mozilla intermediate).

Run as root from the repository root:  .venv/bin/python bench/tls_scan.py [--endpoints 1 5] [--repeat 3]
Prints one line per endpoint count: the wall-clock seconds of each run, min and median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanners.catalog import default_catalog
from scanners.findings import Finding, Status
from scanners.scanning import ScanContext
from scanners.tls import scan_tls
from tests.tls_pki import TestCa
from tests.tls_servers import HARDENED_DIRECTIVES, NAME_SUFFIX, ServerSpec, running_nginx_servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1, 5], help="endpoint counts to time")
    parser.add_argument("--repeat", type=int, default=3, help="runs per endpoint count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preaudit-bench-tls-") as work:
        ca = TestCa(Path(work) / "pki")
        specs = [
            ServerSpec(f"bench-{i}", ca.issue(f"bench-{i}", [f"bench-{i}{NAME_SUFFIX}"]), HARDENED_DIRECTIVES)
            for i in range(1, max(args.endpoints) + 1)
        ]
        with running_nginx_servers(specs, Path(work) / "nginx") as servers:
            endpoints = [server.endpoint() for server in servers.values()]
            for count in args.endpoints:
                seconds = []
                for _ in range(args.repeat):
                    found: list[Finding] = []
                    start = time.perf_counter()
                    scan_tls(ScanContext(default_catalog(), emit=found.append), endpoints[:count], ca_file=ca.ca_file)
                    seconds.append(time.perf_counter() - start)
                    errors = [f.message for f in found if f.status == Status.ERROR]
                    if errors or len(found) != 16 * count:
                        print(f"unexpected findings: {len(found)} (errors: {errors[:3]})", file=sys.stderr)
                        return 1
                runs = " ".join(f"{s:.2f}" for s in seconds)
                print(
                    f"endpoints={count} runs=[{runs}] min={min(seconds):.2f}s median={statistics.median(seconds):.2f}s"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
