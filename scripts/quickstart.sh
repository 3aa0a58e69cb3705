#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a findings report: set up, boot the lab fleet of
# simulation hosts (building the image on first use), harden it, scan it and render the report
# into out/. Run as root. Settings: PREAUDIT_HOSTS (default 3), PREAUDIT_OUT (default out), the
# lab's own (PREAUDIT_LAB_DIR, PREAUDIT_LAB_PREFIX, PREAUDIT_LAB_INVENTORY: see README),
# PREAUDIT_ADVISORIES (a PyPA advisory-database tarball or checkout to import as the offline
# vulnerability database; without one, `preaudit vulndb sync` is tried).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
HOSTS=${PREAUDIT_HOSTS:-3}
OUT=${PREAUDIT_OUT:-out}
INVENTORY=${PREAUDIT_LAB_INVENTORY:-inventories/lab/hosts.yml}
export PATH="$PWD/.venv/bin:$PATH"

preaudit lab up --hosts "$HOSTS" --inventory "$INVENTORY"

# Harden the fleet (the roles read ansible.cfg in this directory).
ansible-playbook -i "$INVENTORY" playbooks/site.yml

# The dependency scanner audits offline against an imported advisory database.
if [ -n "${PREAUDIT_ADVISORIES:-}" ]; then
  preaudit vulndb import "$PREAUDIT_ADVISORIES"
elif ! preaudit vulndb status >/dev/null 2>&1; then
  preaudit vulndb sync || echo "quickstart: no vulnerability database: dependencies will be reported as not audited" >&2
fi

# Scan everything the inventory reaches, then render the report for people and tools.
preaudit scan --inventory "$INVENTORY" --out "$OUT/scan"
preaudit report "$OUT/scan/findings.json" --out "$OUT/report"
echo
echo "HTML report: $(realpath "$OUT/report/report.html")"
