#!/usr/bin/env bash
# The whole test suite: lint and type checks, unit tests, integration tests on a real lab fleet.
# Run as root. Extra arguments go to pytest (e.g. -k lab, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
