"""What the roles take from the host's discovered platform (host_audit ``discover_platform``).

The roles name no installation of their own: the environment files a service reads, the Compose
projects and the nginx TLS servers are those the host's configuration names, plus what the
inventory declares. These filters turn the discovery result (schema in
module_utils/preaudit_discovery.py) into each role's inputs; declared items always win.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

# Only files a service is configured to read: an application directory may hold stray copies,
# which the scanner reports and the secrets role's file permissions area fixes, but whose values
# nothing reads and no role should rotate.
REFERENCED_SOURCES = ("systemd:", "compose:")
SITE_DIRS = ("/etc/nginx/sites-enabled/", "/etc/nginx/sites-available/")
NGINX_SOURCE = re.compile(r"^nginx(?: -T)? (?P<file>/\S+?)(?::\d+)?$")
# Override files belong to the project beside them (Compose merges them): the role writes its own
# override next to the project's file, never one for an override.
COMPOSE_OVERRIDE = re.compile(r"^(docker-)?compose\.override\.ya?ml$")
LISTEN_PORT = re.compile(r"(?:^|:)(\d+)(?:\s|$)")


def _platform(platform: Any) -> dict[str, Any]:
    return platform if isinstance(platform, dict) else {}


def discovered_env_files(platform: Any, declared: Any, keys: Any) -> list[dict[str, Any]]:
    """Environment files a systemd unit or a Compose project reads and the inventory does not
    declare, as ``secrets_hardening_env_files`` entries with the default key policy ``keys``.

    The group is the service's (``Group=``, else its user's group as discovery reports it), so
    the service keeps reading the file once it is 0640 root:GROUP; a systemd unit's own
    ``EnvironmentFile=`` is read by systemd as root either way.
    """
    taken = {str(d.get("path")) for d in declared or () if isinstance(d, dict)}
    out: list[dict[str, Any]] = []
    for item in _platform(platform).get("env_files") or ():
        path = str(item.get("path") or "")
        if not path or path in taken or not str(item.get("source") or "").startswith(REFERENCED_SOURCES):
            continue
        taken.add(path)
        service = str(item.get("service") or "")
        out.append(
            {
                "path": path,
                "group": str(item.get("group") or ""),
                "service": service.removesuffix(".service"),
                "keys": list(keys or ()),
                "source": str(item.get("source")),
            }
        )
    return out


def discovered_compose_files(platform: Any, declared: Any) -> list[str]:
    """Compose files the host's configuration names, after the declared ones, each once; not the
    projects' override files."""
    out = [str(p) for p in declared or ()]
    for item in _platform(platform).get("compose_files") or ():
        path = str(item.get("path") or "")
        if path and path not in out and not COMPOSE_OVERRIDE.match(posixpath.basename(path)):
            out.append(path)
    return out


def _site_file(source: str) -> str | None:
    match = NGINX_SOURCE.match(source.strip())
    if not match or not match.group("file").startswith(SITE_DIRS):
        return None
    return match.group("file")


def _port(listens: list[str]) -> int | None:
    for listen in listens:
        match = LISTEN_PORT.search(listen.split()[0] if listen.split() else "")
        if match:
            return int(match.group(1))
    return None


def discovered_endpoints(platform: Any, declared: Any) -> dict[str, list[dict[str, Any]]]:
    """nginx TLS servers the role can own, as ``tls_hardening_endpoints`` entries, and those it
    cannot (``left``: summary entries of TLS-001 naming the server and why).

    The role writes one site file per endpoint, named after it: a server is adopted when it sits
    in a site file (its name becomes the endpoint's), proxies to one upstream and names its
    certificate and key. Declared endpoints win by name and by port.
    """
    names = {str(d.get("name")) for d in declared or () if isinstance(d, dict)}
    ports = {int(d.get("listen", 443)) for d in declared or () if isinstance(d, dict)}
    adopted: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    for server in _platform(platform).get("nginx", {}).get("servers") or ():
        if not server.get("tls"):
            continue
        source = str(server.get("source") or "")
        listens = [str(entry) for entry in server.get("listen") or ()]
        port = _port(listens)
        site = _site_file(source)
        upstreams = [str(u) for u in server.get("proxy_pass") or ()]
        certificates = [str(c.get("path")) for c in server.get("certificates") or ()]
        keys = [str(k.get("path")) for k in server.get("private_keys") or ()]
        name = posixpath.basename(site) if site else ""
        reason = ""
        if site is None:
            reason = "not in a site file of /etc/nginx/sites-available: declare it in tls_hardening_endpoints"
        elif len(set(upstreams)) != 1:
            reason = "does not proxy to exactly one upstream: declare it in tls_hardening_endpoints"
        elif not certificates or not keys or port is None:
            reason = "names no certificate, key or port: declare it in tls_hardening_endpoints"
        if name in names or port in ports:
            continue  # declared: the inventory's settings apply
        if reason:
            left.append({"control": "TLS-001", "action": "not_applied", "reason": reason, "target": source})
            continue
        names.add(name)
        ports.add(port)  # type: ignore[arg-type]
        adopted.append(
            {
                "name": name,
                "server_names": [n for n in server.get("server_names") or () if n and n != "_"],
                "listen": port,
                "ipv6": any(entry.startswith("[") for entry in listens),
                "default_server": any("default_server" in entry.split() for entry in listens),
                "upstream": upstreams[0],
                "certificate": certificates[0],
                "private_key": keys[0],
                "source": source,
            }
        )
    return {"adopted": adopted, "left": left}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "preaudit_discovered_env_files": discovered_env_files,
            "preaudit_discovered_compose_files": discovered_compose_files,
            "preaudit_discovered_endpoints": discovered_endpoints,
        }
