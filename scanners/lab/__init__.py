"""The lab: a fleet of real Debian 12 simulation hosts booted with systemd-nspawn."""
