#!/bin/sh
# Recipe of the lab's simulation-host image (variant "lab"), run inside the freshly debootstrapped
# tree after common.sh. The resulting host is deliberately as weak as a real, never-hardened host:
# every weakness seeded here or in common.sh is listed in scanners/lab/weaknesses.yml. Changing
# this file changes the lab variant's recipe hash and triggers a rebuild of its cached image.
. /tmp/common.sh

begin_build

# Packages of a simulation host. docker.io runs the platform's containers; inetutils-telnet
# is a seeded insecure client.
apt-get install -y -qq --no-install-recommends \
    apt-utils acl ca-certificates cron docker.io inetutils-telnet iptables less logrotate \
    nginx openssl python3-apt tzdata

# The offline apt source: every package the roles may install, with dependencies and
# recommends, so that `apt` tasks work on these network-less hosts as against a mirror.
# python3-cryptography: the tls_hardening role's certificate module runs on the target with it.
fetch_debs "$OFFLINE" \
    auditd audispd-plugins libpam-pwquality nftables unattended-upgrades apt-listchanges \
    rsyslog apparmor apparmor-utils aide chrony python3-cryptography
# systemd-timesyncd conflicts with chrony, so it is fetched on its own.
fetch_debs "$OFFLINE" systemd-timesyncd
index_apt_source "$OFFLINE"
use_only_apt_source "$OFFLINE"

# Accounts: an administrator for automation, the service account, a forgotten legacy account.
useradd --create-home --shell /bin/bash --groups sudo ops
echo 'ops:ops-lab-password' | chpasswd
echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops
chmod 0440 /etc/sudoers.d/ops
echo 'root:root' | chpasswd
add_service_account
useradd --create-home --shell /bin/bash --groups docker legacy
passwd -d legacy >/dev/null

install_platform

# Docker: the daemon.json sets "hosts", which conflicts with -H fd:// of Debian's unit.
mkdir -p /etc/systemd/system/docker.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd\n' > /etc/systemd/system/docker.service.d/hosts.conf

# Seeded file-system weaknesses.
# A stray build artefact owned by a uid that no longer exists.
dd if=/dev/zero of=/opt/montecarlo/data/legacy-build.tar bs=1k count=4 2>/dev/null
chown 4242:4242 /opt/montecarlo/data/legacy-build.tar
mkdir -p /srv/scratch /usr/local/share/montecarlo
chmod 0777 /srv/scratch
echo 'PATH=/opt/montecarlo/bin:/usr/local/bin:/usr/bin' > /usr/local/share/montecarlo/paths.conf
chmod 0666 /usr/local/share/montecarlo/paths.conf
cp /usr/bin/id /usr/local/bin/sim-backup
chmod 4755 /usr/local/bin/sim-backup

finish_build montecarlo.service nginx.service ssh.service docker.service cron.service
