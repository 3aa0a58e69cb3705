#!/bin/sh
# Recipe of the "minimal" simulation-host image, run inside the freshly debootstrapped tree after
# common.sh: a host as a real fleet has them, debootstrap's minbase with only what the platform
# needs, managed as root with a key. It has no netbase (no /etc/protocols), no openssl, no
# python3-cryptography, no python3-apt, no Docker Engine. Changing this file changes the minimal
# variant's recipe hash only.
. /tmp/common.sh

begin_build
apt-get install -y -qq --no-install-recommends nginx

# The offline apt source: exactly the packages the roles' controls install and what they depend
# on as this host is (the roles install without recommends). apt-utils is not installed yet, so
# nothing it brings counts.
fetch_debs "$OFFLINE" --no-install-recommends \
    auditd audispd-plugins libpam-pwquality nftables unattended-upgrades apt-listchanges \
    rsyslog apparmor apparmor-utils aide chrony
# systemd-timesyncd conflicts with chrony, so it is fetched on its own.
fetch_debs "$OFFLINE" --no-install-recommends systemd-timesyncd
if ls "$OFFLINE" | grep -q '^python3-cryptography_'; then
    echo "python3-cryptography must not be in the minimal host's apt source" >&2
    exit 1
fi
# Not configured: what a test adds to the host's sources to fix a control that failed for lack
# of python3-cryptography.
fetch_debs "$FIX_APT" --no-install-recommends python3-cryptography

# apt-ftparchive only for the indexes: the host keeps none of it.
apt-get install -y -qq --no-install-recommends apt-utils
index_apt_source "$OFFLINE"
index_apt_source "$FIX_APT"
apt-get purge -y -qq apt-utils
apt-get autoremove --purge -y -qq
use_only_apt_source "$OFFLINE"

add_service_account
install_platform
# The platform's legacy sshd drop-in, but root logins stay at Debian's default
# (prohibit-password): this host is managed as root with a key.
sed -i '/^PermitRootLogin /d' /etc/ssh/sshd_config.d/50-legacy-access.conf

finish_build montecarlo.service nginx.service ssh.service
