#!/usr/bin/env bash
# Install what preaudit needs on a Debian 12 controller (as root): Debian packages for the lab
# and the tests, a virtualenv in .venv with the pinned Python dependencies, preaudit itself.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  debootstrap systemd-container socat iproute2 util-linux openssh-client ca-certificates
  # lxc: the lab's LXC hosts (`lab up --platforms lxc`); its lxc-net bridge is not used.
  # qemu-system-x86 and e2fsprogs: its VM hosts (`--platforms vm`).
  lxc qemu-system-x86 e2fsprogs
  python3-venv python3-pip nginx openssl
  docker.io busybox-static chromium chromium-driver
  # postgresql: the history store tests start their own server (tests/postgres_server.py) on a
  # private unix socket; any cluster the package creates or starts is left alone.
  postgresql
)
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (sudo $0): the lab needs systemd-nspawn, mounts and veth links" >&2
  exit 2
fi
missing=()
for pkg in "${APT_PACKAGES[@]}" ${PREAUDIT_EXTRA_APT:-}; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.preaudit-requirements
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
