#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a result: set up, boot the lab fleet of
# simulation hosts (building the image on first use). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
HOSTS=${PREAUDIT_HOSTS:-3}
.venv/bin/preaudit lab up --hosts "$HOSTS"
