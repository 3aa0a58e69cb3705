"""The roles take the platform from what discovery finds on the host (filter_plugins/discovered.py):
the environment files services read, the Compose projects, the nginx TLS servers they can own."""

from __future__ import annotations

from typing import Any

from tests.unit.module_loader import ROOT, load_file

DISCOVERED = load_file("preaudit_discovered_filters", ROOT / "filter_plugins" / "discovered.py")
KEYS = [{"name": "JWT_SECRET", "min_length": 32, "generate": True}]


def platform() -> dict[str, Any]:
    """A relocated platform as discovery reports it (schema of module_utils/preaudit_discovery.py)."""
    return {
        "env_files": [
            {"path": "/srv/simsvc/.env", "source": "systemd:simsvc.service EnvironmentFile= /etc/x:7",
             "service": "simsvc.service", "user": "sim", "group": "sim"},
            {"path": "/srv/compose/sim/.env", "source": "compose:/srv/compose/sim/compose.yml env_file",
             "service": "", "user": "", "group": ""},
            {"path": "/srv/simsvc/app/.env.old", "source": "app:/srv/simsvc/app", "service": "", "group": ""},
        ],
        "compose_files": [
            {"path": "/srv/compose/sim/compose.yml", "source": "systemd:simsvc.service"},
            {"path": "/srv/compose/sim/docker-compose.override.yml", "source": "sweep:/srv"},
            {"path": "/srv/other/compose.prod.yaml", "source": "sweep:/srv"},
        ],
        "nginx": {
            "servers": [
                {"tls": False, "listen": ["80 default_server"], "source": "nginx -T /etc/nginx/sites-enabled/sim:3"},
                {"tls": True, "listen": ["443 ssl default_server", "[::]:443 ssl"],
                 "server_names": ["sim.example", "_"],
                 "proxy_pass": ["http://127.0.0.1:9000", "http://127.0.0.1:9000"],
                 "certificates": [{"path": "/etc/pki/sim/sim.crt"}], "private_keys": [{"path": "/etc/pki/sim/sim.key"}],
                 "source": "nginx -T /etc/nginx/sites-enabled/sim:11"},
                {"tls": True, "listen": ["8443 ssl"], "server_names": ["admin"], "proxy_pass": [],
                 "certificates": [{"path": "/etc/a.crt"}], "private_keys": [{"path": "/etc/a.key"}],
                 "source": "nginx -T /etc/nginx/sites-enabled/static:2"},
                {"tls": True, "listen": ["9443 ssl"], "server_names": ["x"], "proxy_pass": ["http://127.0.0.1:1"],
                 "certificates": [{"path": "/etc/b.crt"}], "private_keys": [{"path": "/etc/b.key"}],
                 "source": "nginx -T /etc/nginx/conf.d/x.conf:4"},
            ]
        },
    }  # fmt: skip


def test_only_env_files_a_service_reads_are_hardened_with_its_group_and_service() -> None:
    found = DISCOVERED.discovered_env_files(platform(), [], KEYS)
    assert [(f["path"], f["group"], f["service"]) for f in found] == [
        ("/srv/simsvc/.env", "sim", "simsvc"),
        ("/srv/compose/sim/.env", "", ""),
    ]
    assert found[0]["keys"] == KEYS
    assert found[0]["source"].startswith("systemd:simsvc.service")


def test_a_declared_env_file_wins_over_the_discovered_one() -> None:
    declared = [{"path": "/srv/simsvc/.env", "group": "ops", "keys": []}]
    assert [f["path"] for f in DISCOVERED.discovered_env_files(platform(), declared, KEYS)] == ["/srv/compose/sim/.env"]


def test_compose_files_are_the_declared_then_the_discovered_each_once() -> None:
    assert DISCOVERED.discovered_compose_files(platform(), ["/a/compose.yml", "/srv/compose/sim/compose.yml"]) == [
        "/a/compose.yml",
        "/srv/compose/sim/compose.yml",
        "/srv/other/compose.prod.yaml",
    ]
    assert DISCOVERED.discovered_compose_files({}, []) == []


def test_tls_servers_in_site_files_with_one_upstream_become_endpoints() -> None:
    found = DISCOVERED.discovered_endpoints(platform(), [])
    assert found["adopted"] == [
        {
            "name": "sim",
            "server_names": ["sim.example"],
            "listen": 443,
            "ipv6": True,
            "default_server": True,
            "upstream": "http://127.0.0.1:9000",
            "certificate": "/etc/pki/sim/sim.crt",
            "private_key": "/etc/pki/sim/sim.key",
            "source": "nginx -T /etc/nginx/sites-enabled/sim:11",
        }
    ]
    left = {e["target"]: e["reason"] for e in found["left"]}
    assert set(left) == {"nginx -T /etc/nginx/sites-enabled/static:2", "nginx -T /etc/nginx/conf.d/x.conf:4"}
    assert left["nginx -T /etc/nginx/sites-enabled/static:2"].startswith("does not proxy to exactly one upstream")
    assert left["nginx -T /etc/nginx/conf.d/x.conf:4"].startswith("not in a site file")
    assert {e["control"] for e in found["left"]} == {"TLS-001"}


def test_declared_endpoints_win_by_name_and_by_port() -> None:
    assert DISCOVERED.discovered_endpoints(platform(), [{"name": "sim"}])["adopted"] == []
    assert DISCOVERED.discovered_endpoints(platform(), [{"name": "other", "listen": 443}])["adopted"] == []
    assert DISCOVERED.discovered_endpoints(None, [])["adopted"] == []
