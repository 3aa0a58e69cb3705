"""The SSH relay to a host's Docker Engine: ssh arguments from the inventory's connection data."""

from __future__ import annotations

import shlex
from pathlib import Path

from scanners.docker_ssh import REMOTE_SOCKET, ssh_base
from scanners.docker_ssh import remote_command as remote
from scanners.host_scan import InventoryHost


def test_ssh_arguments_follow_the_inventory() -> None:
    host = InventoryHost(
        "sim-1",
        {
            "ansible_host": "127.0.0.1",
            "ansible_port": 2201,
            "ansible_user": "ops",
            "ansible_ssh_private_key_file": "/lab/ssh/id_ed25519",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_become": True,
        },
    )
    argv = ssh_base(host, Path("/tmp/x/ssh-sim-1"), timeout=7)
    assert argv[0] == "ssh" and argv[-1] == "ops@127.0.0.1"
    assert "ConnectTimeout=7" in argv and "BatchMode=yes" in argv
    assert argv[argv.index("-p") + 1] == "2201" and argv[argv.index("-i") + 1] == "/lab/ssh/id_ed25519"
    assert "StrictHostKeyChecking=no" in argv and "ControlPath=/tmp/x/ssh-sim-1" in argv
    command = remote(host, ["python3", "-c", "print(1)", REMOTE_SOCKET])
    assert shlex.split(command) == ["sudo", "-n", "python3", "-c", "print(1)", "/var/run/docker.sock"]


def test_without_become_the_user_connects_directly() -> None:
    host = InventoryHost("web", {"ansible_become": True, "ansible_become_user": "deploy"})
    assert ssh_base(host, Path("/tmp/c"), timeout=10)[-1] == "web"
    assert remote(host, ["test", "-S", REMOTE_SOCKET]) == "test -S /var/run/docker.sock"
