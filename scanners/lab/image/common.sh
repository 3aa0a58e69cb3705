# Steps every variant of the simulation-host image shares, sourced by its recipe (build-*.sh)
# inside the freshly debootstrapped tree. The image builder (scanners/lab/image.py) sets
# PREAUDIT_OFFLINE_APT and PREAUDIT_FIX_APT. Changing this file changes every variant's recipe
# hash.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
OFFLINE=${PREAUDIT_OFFLINE_APT:?set by the image builder}
FIX_APT=${PREAUDIT_FIX_APT:?set by the image builder}

begin_build() {
    # Services must not start inside the build chroot.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    apt-get update -qq
}

# fetch_debs DIR [APT-OPTION...] PACKAGE...: download into DIR the packages and whatever apt
# would add to install them on this tree as it is now, without installing anything.
fetch_debs() {
    dir=$1
    shift
    mkdir -p "$dir"
    apt-get clean
    apt-get install -y -qq --download-only "$@"
    mv /var/cache/apt/archives/*.deb "$dir"/ 2>/dev/null || true
}

# index_apt_source DIR: make DIR a flat apt repository (needs apt-ftparchive, from apt-utils).
index_apt_source() {
    (cd "$1" && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release)
}

# use_only_apt_source DIR: the host's one apt source from now on (lab hosts have no network).
use_only_apt_source() {
    rm -f /etc/apt/sources.list
    rm -rf /etc/apt/sources.list.d/*
    echo "deb [trusted=yes] file:$1 ./" > /etc/apt/sources.list.d/offline.list
    apt-get update -qq
    apt-get clean
}

add_service_account() {
    useradd --system --home-dir /opt/montecarlo --no-create-home --shell /usr/sbin/nologin montecarlo
}

# The platform as it was installed on every simulation host: service code, secrets and container
# build files readable by everyone, the TLS key pair the image builder generated (the key
# world-readable), nginx serving it. Needs nginx installed and the service account.
install_platform() {
    chown -R root:root /opt/montecarlo
    chmod 0755 /opt/montecarlo /opt/montecarlo/app
    chmod 0644 /opt/montecarlo/app/*.py /opt/montecarlo/requirements.txt /opt/montecarlo/Dockerfile \
        /opt/montecarlo/docker-compose.yml
    chmod 0644 /opt/montecarlo/.env
    mkdir -p /opt/montecarlo/results /opt/montecarlo/data
    chown montecarlo:montecarlo /opt/montecarlo/results

    chmod 0755 /etc/ssl/montecarlo
    chmod 0644 /etc/ssl/montecarlo/server.key /etc/ssl/montecarlo/server.crt

    rm -f /etc/nginx/sites-enabled/default
    ln -sf /etc/nginx/sites-available/montecarlo /etc/nginx/sites-enabled/montecarlo
}

# finish_build UNIT...: enable the units, then leave nothing of the build or of this tree's
# identity behind.
finish_build() {
    systemctl enable "$@" >/dev/null 2>&1
    # Timers that would only try to reach the (absent) network during tests.
    systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

    # Host keys are generated per host when the lab boots it; each host gets its own machine id.
    rm -f /etc/ssh/ssh_host_*
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id
    rm -f /usr/sbin/policy-rc.d
    rm -rf /var/lib/apt/lists/*_debian_* /var/log/*.log /tmp/* 2>/dev/null || true
}
