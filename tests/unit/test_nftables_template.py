"""The firewall ruleset the OS role writes loads on a minimal host: no /etc/protocols (no
netbase), so nft must not need a protocol name that only that file resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles/os_hardening/templates/nftables.conf.j2"


def _render() -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE.name).render(
        os_hardening_firewall_extra_input_rules=[],
        _os_hardening_fw_ssh_ports=[22],
        os_hardening_firewall_allowed_tcp_ports=[443],
        os_hardening_firewall_allowed_udp_ports=[],
    )


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and nftables")
def test_ruleset_validates_without_etc_protocols(tmp_path: Path) -> None:
    ruleset = tmp_path / "nftables.conf"
    ruleset.write_text(_render())
    # A private mount namespace hides /etc/protocols from nft as a minbase host lacks it.
    script = f"mount --bind /dev/null /etc/protocols && nft -c -f {ruleset}"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_ruleset_accepts_icmpv6_by_number_and_only_for_ipv6() -> None:
    rules = [line.strip() for line in _render().splitlines() if not line.strip().startswith("#")]
    assert "meta nfproto ipv6 meta l4proto 58 accept" in rules
    assert not [line for line in rules if "ipv6-icmp" in line]
