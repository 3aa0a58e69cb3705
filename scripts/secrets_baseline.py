"""Rewrite .secrets.baseline: the secrets preaudit's scanner finds in this repository outside tests/data.

The repository holds deliberate secrets (the lab's weak .env, example URLs in docs and tests).
The baseline records them in detect-secrets' format so that the repository scans clean; review
the diff before committing it: anything new in it is a secret someone added.

Run: ``.venv/bin/python scripts/secrets_baseline.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from detect_secrets.__version__ import VERSION as DETECT_SECRETS_VERSION
from detect_secrets.core.potential_secret import PotentialSecret

from scanners import secrets as secrets_scanner
from scanners.catalog import default_catalog
from scanners.findings import Finding, Status
from scanners.scanning import ScanContext, ScanRoot
from scanners.secret_lines import LineScanner

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / ".secrets.baseline"
EXCLUDED = "tests/data/"


def flagged_files() -> list[str]:
    found: list[Finding] = []
    with tempfile.TemporaryDirectory() as cache:
        ctx = ScanContext(default_catalog(), found.append)
        secrets_scanner.scan_secrets(ctx, [ScanRoot(REPO, display=".")], cache_dir=Path(cache))
    return sorted(
        {
            f.resource.path
            for f in found
            if f.status is Status.FAIL
            and f.resource.path
            and not f.resource.path.startswith(EXCLUDED)
            and f.resource.path != BASELINE.name
        }
    )


def entries(relative: str, scanner: LineScanner) -> list[dict[str, object]]:
    text = (REPO / relative).read_text(encoding="utf-8")
    seen: dict[tuple[str, str], PotentialSecret] = {}
    for lines in secrets_scanner._line_sets(relative, text):
        for secret in scanner.scan(lines, relative):
            seen.setdefault((secret.type, secret.secret_hash), secret)
    return [
        {
            "type": s.type,
            "filename": relative,
            "hashed_secret": s.secret_hash,
            "is_verified": False,
            "line_number": s.line_number,
        }
        for s in sorted(seen.values(), key=lambda s: (s.line_number, s.type))
    ]


def main() -> int:
    files = flagged_files()
    secrets_scanner._init_worker(b"baseline entries hold detect-secrets' own hashes")
    scanner = LineScanner()
    results = {relative: entries(relative, scanner) for relative in files}
    baseline = {
        "version": DETECT_SECRETS_VERSION,
        "plugins_used": [{"name": name} for name in secrets_scanner.plugin_names()],
        "filters_used": [],
        "results": results,
    }
    BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
    print(f"{BASELINE.name}: {sum(len(v) for v in results.values())} secrets in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
