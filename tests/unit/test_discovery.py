"""Target-side discovery of the platform (module_utils/preaudit_discovery.py) on fixture trees: each
source (systemd, nginx -T and its fallback, Compose, the sweep), the sweep's bounds and how their
hitting is reported. ``tmp_path`` stands for the host's ``/``; results name host paths."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.module_loader import library, module_utils

D = module_utils("preaudit_discovery")

# A private key block's header, split so that the repository's own secret scan sees no key here.
KEY_PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nx\n"
UNIT = """\
[Unit]
Description=Simulation service

[Service]
User=simsvc
Group=simsvc
WorkingDirectory=/srv/simsvc
EnvironmentFile=-/srv/simsvc/.env
ExecStart=/usr/bin/python3 /srv/simsvc/app/server.py \\
    --config=/srv/simsvc/settings.toml
"""


def put(root: Path, path: str, text: str = "", mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(text))
    target.chmod(mode)
    return target


def discover(root: Path, runner: Any = None, **options: Any) -> dict[str, Any]:
    """Discovery under ``root`` with a runner that knows no nginx unless one is given."""
    result: dict[str, Any] = D.discover(
        str(root), D.Options(**options), runner or (lambda argv, timeout: (127, "", "not here"))
    )
    return result


def by_path(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["path"]: i for i in items}


# -- systemd --------------------------------------------------------------------------------


def platform_host(root: Path) -> None:
    put(root, "/etc/systemd/system/simsvc.service", UNIT)
    put(root, "/srv/simsvc/.env", "JWT_SECRET=x\n")
    put(root, "/srv/simsvc/app/server.py", "print('hi')\n")
    put(root, "/srv/simsvc/app/lib/tokens.py", "")
    put(root, "/srv/simsvc/app/__pycache__/server.cpython-311.pyc", "")
    put(root, "/srv/simsvc/settings.toml", "")


def test_a_unit_names_its_env_file_working_directory_and_the_code_it_runs(tmp_path: Path) -> None:
    platform_host(tmp_path)
    found = discover(tmp_path, roots=())
    [service] = found["services"]
    assert service == {
        "unit": "simsvc.service",
        "path": "/etc/systemd/system/simsvc.service",
        "source": "systemd:simsvc.service /etc/systemd/system/simsvc.service",
        "user": "simsvc",
        "group": "simsvc",
        "working_directory": "/srv/simsvc",
        "environment_files": ["/srv/simsvc/.env"],
        "exec_paths": ["/srv/simsvc/app/server.py", "/srv/simsvc/settings.toml"],
        "app_dirs": ["/srv/simsvc", "/srv/simsvc/app"],
    }
    assert found["env_files"] == [
        {
            "path": "/srv/simsvc/.env",
            "source": "systemd:simsvc.service EnvironmentFile= /etc/systemd/system/simsvc.service:8",
            "service": "simsvc.service",
            "user": "simsvc",
            "group": "simsvc",
        }
    ]
    sources = {i["path"]: i["source"] for i in found["python_sources"]}
    wd = "systemd:simsvc.service WorkingDirectory= /etc/systemd/system/simsvc.service:7"
    assert sources == {"/srv/simsvc/app/server.py": wd, "/srv/simsvc/app/lib/tokens.py": wd}


def test_debian_units_are_left_out_unless_a_variable_names_them(tmp_path: Path) -> None:
    put(tmp_path, "/lib/systemd/system/nginx.service", "[Service]\nWorkingDirectory=/srv/www\n")
    put(tmp_path, "/usr/lib/systemd/system/ssh.service", "[Service]\nExecStart=/usr/sbin/sshd -D\n")
    put(tmp_path, "/usr/lib/systemd/system/vendor-app.service", "[Service]\nWorkingDirectory=/opt/vendor\n")
    # dpkg lists a usr-merged unit under /lib; the file itself is under /usr/lib.
    put(tmp_path, "/var/lib/dpkg/info/nginx-common.list", "/lib/systemd/system/nginx.service\n")
    put(tmp_path, "/var/lib/dpkg/info/openssh-server.list", "/lib/systemd/system/ssh.service\n")
    # An alias (a link) is not a unit of its own.
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/sshd.service").symlink_to("/lib/systemd/system/ssh.service")
    units = [s["unit"] for s in discover(tmp_path, roots=())["services"]]
    assert units == ["vendor-app.service"]
    named = discover(tmp_path, roots=(), units=("nginx",))["services"]
    assert [(s["unit"], s["source"]) for s in named] == [
        ("nginx.service", "variable:preaudit_discovery_units"),
        ("vendor-app.service", "systemd:vendor-app.service /usr/lib/systemd/system/vendor-app.service"),
    ]
    assert discover(tmp_path, roots=(), units=("absent",))["errors"] == [
        "units named by preaudit_discovery_units not found: absent"
    ]


def test_drop_ins_override_the_unit_and_an_empty_value_resets_the_list(tmp_path: Path) -> None:
    platform_host(tmp_path)
    put(tmp_path, "/srv/simsvc/prod.env", "A=1\n")
    put(tmp_path, "/etc/systemd/system/simsvc.service.d/10-env.conf", "[Service]\nEnvironmentFile=\n")
    put(
        tmp_path,
        "/etc/systemd/system/simsvc.service.d/20-env.conf",
        "[Service]\nEnvironmentFile=/srv/simsvc/prod.env\n",
    )
    found = discover(tmp_path, roots=())
    assert found["services"][0]["environment_files"] == ["/srv/simsvc/prod.env"]
    assert by_path(found["env_files"])["/srv/simsvc/prod.env"]["source"] == (
        "systemd:simsvc.service EnvironmentFile= /etc/systemd/system/simsvc.service.d/20-env.conf:2"
    )
    # The .env the drop-in no longer names is still found, as a file of the application's directory.
    assert by_path(found["env_files"])["/srv/simsvc/.env"]["source"].startswith(
        "systemd:simsvc.service WorkingDirectory="
    )


def test_a_working_directory_of_the_operating_system_is_never_walked(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/system/odd.service", "[Service]\nWorkingDirectory=/\nExecStart=/usr/bin/env true\n")
    put(tmp_path, "/etc/stray.env", "A=1\n")
    found = discover(tmp_path, roots=())
    assert found["services"][0]["app_dirs"] == []
    assert found["env_files"] == []


# -- nginx ----------------------------------------------------------------------------------

NGINX_T = """\
nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
# configuration file /etc/nginx/nginx.conf:
user www-data;
http {
    ssl_certificate /etc/pki/default.crt;   # inherited by servers without their own
    ssl_certificate_key /etc/pki/default.key;
    include /etc/nginx/sites-enabled/*;
    # server { listen 8443 ssl; }   a comment, not a server
}

# configuration file /etc/nginx/sites-enabled/sim-api:
server {
    listen 80;
    server_name _;
    location / { proxy_pass http://127.0.0.1:8000; }
}
server {
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name sim.example "api.sim.example";
    ssl_certificate /etc/pki/sim/server.crt;
    ssl_certificate_key /etc/pki/sim/server.key;
    root /var/www/sim;
    location /api/ { proxy_pass http://127.0.0.1:8000; }
}
server {
    listen 8443 ssl;
    server_name legacy.sim.example;
}

"""


def nginx_host(root: Path) -> None:
    put(root, "/usr/sbin/nginx", "", 0o755)
    for name in ("sim/server.crt", "sim/server.key", "default.crt", "default.key"):
        put(root, f"/etc/pki/{name}", KEY_PEM if name.endswith(".key") else "cert\n")


def test_nginx_t_gives_servers_with_their_tls_files_and_the_lines_that_name_them(tmp_path: Path) -> None:
    nginx_host(tmp_path)
    calls: list[list[str]] = []

    def runner(argv: list[str], timeout: float) -> tuple[int, str, str]:
        calls.append(argv)
        return 0, NGINX_T.split("\n", 1)[1], NGINX_T.split("\n", 1)[0]

    found = discover(tmp_path, runner=runner, roots=())
    assert calls == [["/usr/sbin/nginx", "-T"]]
    assert found["nginx"]["method"] == "nginx -T" and found["nginx"]["error"] is None
    servers = found["nginx"]["servers"]
    assert [s["source"] for s in servers] == [
        "nginx -T /etc/nginx/sites-enabled/sim-api:1",
        "nginx -T /etc/nginx/sites-enabled/sim-api:6",
        "nginx -T /etc/nginx/sites-enabled/sim-api:15",
    ]
    assert servers[0]["proxy_pass"] == ["http://127.0.0.1:8000"] and not servers[0]["tls"]
    assert servers[1]["roots"] == ["/var/www/sim"]
    assert found["tls"] == [
        {
            "server_names": ["sim.example", "api.sim.example"],
            "listen": ["443 ssl", "[::]:443 ssl"],
            "certificate": "/etc/pki/sim/server.crt",
            "private_key": "/etc/pki/sim/server.key",
            "source": "nginx -T /etc/nginx/sites-enabled/sim-api:6",
        },
        {
            "server_names": ["legacy.sim.example"],
            "listen": ["8443 ssl"],
            "certificate": "/etc/pki/default.crt",
            "private_key": "/etc/pki/default.key",
            "source": "nginx -T /etc/nginx/sites-enabled/sim-api:15",
        },
    ]
    assert by_path(found["private_keys"])["/etc/pki/sim/server.key"]["source"] == (
        "nginx -T /etc/nginx/sites-enabled/sim-api:11"
    )
    assert by_path(found["private_keys"])["/etc/pki/default.key"]["source"] == "nginx -T /etc/nginx/nginx.conf:4"
    assert set(by_path(found["certificates"])) == {"/etc/pki/sim/server.crt", "/etc/pki/default.crt"}


def test_when_nginx_t_fails_the_files_are_read_with_their_includes(tmp_path: Path) -> None:
    nginx_host(tmp_path)
    put(tmp_path, "/etc/nginx/nginx.conf", "http {\n    include sites-enabled/*;\n}\n")
    site = put(tmp_path, "/etc/nginx/sites-available/sim-api", NGINX_T.split("sim-api:\n", 1)[1])
    (tmp_path / "etc/nginx/sites-enabled").mkdir()
    (tmp_path / "etc/nginx/sites-enabled/sim-api").symlink_to(Path("..") / "sites-available" / site.name)

    def runner(argv: list[str], timeout: float) -> tuple[int, str, str]:
        return 1, "", "nginx: [emerg] cannot load certificate\nnginx: configuration file test failed"

    found = discover(tmp_path, runner=runner, roots=())
    assert found["nginx"]["method"] == "files"
    assert found["nginx"]["error"] == "nginx -T failed (exit 1): nginx: configuration file test failed"
    assert found["errors"] == [found["nginx"]["error"]]
    assert [t["source"] for t in found["tls"]] == ["nginx /etc/nginx/sites-enabled/sim-api:6"]
    assert found["tls"][0]["private_key"] == "/etc/pki/sim/server.key"


def test_the_nginx_tokenizer_keeps_quotes_variables_and_lines() -> None:
    text = "a \"b c\" 'd;e';\n# gone { }\nif ($x ~ ^/a{2}) {\n  return 301 ${scheme}://h;\n}\n"
    tokens = list(D.nginx_tokens(text))
    assert tokens[:5] == [("a", 1), ("b c", 1), ("d;e", 1), (";", 1), ("if", 3)]
    assert ("${scheme}://h", 4) in tokens


# -- Docker Compose -------------------------------------------------------------------------

COMPOSE = """\
services:
  api:
    build: .
    env_file: .env          # the platform's secrets
    environment:
      - MODE=prod
  worker:
    build:
      context: ./worker
      dockerfile: Dockerfile.prod
    env_file:
      - ./worker.env
      - path: /etc/sim/shared.env
        required: false
  cron:
    image: busybox
    env_file: ["a.env", "${HOME}/b.env", {path: c.env}]
"""


def test_compose_env_files_and_builds_are_read_without_a_yaml_library() -> None:
    refs = [(r.key, r.value, r.service, r.line) for r in D.compose_refs(COMPOSE)]
    assert refs == [
        ("build", ".", "api", 3),
        ("env_file", ".env", "api", 4),
        ("build", "./worker", "worker", 8),
        ("env_file", "./worker.env", "worker", 11),
        ("env_file", "/etc/sim/shared.env", "worker", 11),
        ("env_file", "a.env", "cron", 17),
        ("env_file", "c.env", "cron", 17),
    ]
    assert [r.dockerfile for r in D.compose_refs(COMPOSE) if r.key == "build"] == ["Dockerfile", "Dockerfile.prod"]


def test_a_compose_project_beside_the_working_directory_brings_its_files(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/system/sim.service", "[Service]\nWorkingDirectory=/opt/sim/app\n")
    put(tmp_path, "/opt/sim/app/main.py", "")
    put(tmp_path, "/opt/sim/docker-compose.yml", COMPOSE)
    put(tmp_path, "/opt/sim/.env", "A=1\n")
    put(tmp_path, "/opt/sim/Dockerfile", "FROM python:3.11\n")
    put(tmp_path, "/opt/sim/requirements.txt", "flask==3.0.0\n")
    put(tmp_path, "/opt/sim/worker/Dockerfile.prod", "FROM python:3.11\n")
    put(tmp_path, "/opt/sim/worker.env", "B=2\n")
    put(tmp_path, "/etc/sim/shared.env", "C=3\n")
    put(tmp_path, "/etc/docker/compose/other/compose.yaml", "services:\n  x:\n    image: busybox\n")
    put(tmp_path, "/etc/docker/daemon.json", "{}\n")
    found = discover(tmp_path, roots=())
    compose = by_path(found["compose_files"])
    base = compose["/opt/sim/docker-compose.yml"]
    assert base["source"] == (
        "systemd:sim.service WorkingDirectory= /etc/systemd/system/sim.service:2 (Compose file, 1 level up)"
    )
    assert base["env_files"] == [
        "/opt/sim/.env",
        "/opt/sim/worker.env",
        "/etc/sim/shared.env",
        "/opt/sim/a.env",
        "/opt/sim/c.env",
    ]
    assert base["build_contexts"] == ["/opt/sim", "/opt/sim/worker"]
    assert compose["/etc/docker/compose/other/compose.yaml"]["source"] == "docker:/etc/docker/compose"
    envs = by_path(found["env_files"])
    assert envs["/etc/sim/shared.env"] == {
        "path": "/etc/sim/shared.env",
        "source": "compose:/opt/sim/docker-compose.yml env_file",
        "service": "worker",
        "user": None,
        "group": None,
    }
    assert set(envs) == {"/opt/sim/.env", "/opt/sim/worker.env", "/etc/sim/shared.env"}
    assert by_path(found["dockerfiles"]) == {
        "/opt/sim/Dockerfile": {"path": "/opt/sim/Dockerfile", "source": "compose:/opt/sim/docker-compose.yml build"},
        "/opt/sim/worker/Dockerfile.prod": {
            "path": "/opt/sim/worker/Dockerfile.prod",
            "source": "compose:/opt/sim/docker-compose.yml build",
        },
    }
    assert by_path(found["requirements"])["/opt/sim/requirements.txt"]["source"] == (
        "compose:/opt/sim/docker-compose.yml directory"
    )
    assert found["daemon_json"] == {"path": "/etc/docker/daemon.json", "source": "docker:/etc/docker/daemon.json"}
    fetched = dict(D.files_to_fetch(found))
    assert {"/opt/sim/app/main.py", "/etc/docker/daemon.json", "/etc/sim/shared.env"} <= set(fetched)


def test_a_link_is_followed_to_the_file_it_names(tmp_path: Path) -> None:
    put(tmp_path, "/etc/systemd/system/sim.service", "[Service]\nEnvironmentFile=/etc/sim.env\n")
    put(tmp_path, "/srv/secrets/sim.env", "A=1\n")
    (tmp_path / "etc/sim.env").symlink_to(Path("..") / "srv" / "secrets" / "sim.env")
    assert [e["path"] for e in discover(tmp_path, roots=())["env_files"]] == ["/srv/secrets/sim.env"]


# -- the sweep ------------------------------------------------------------------------------


def test_the_sweep_finds_what_nothing_references_any_more(tmp_path: Path) -> None:
    platform_host(tmp_path)
    put(tmp_path, "/home/legacy/old-deploy/.env", "JWT_SECRET=changeme\n")
    put(tmp_path, "/home/legacy/old-deploy/.env.example", "JWT_SECRET=\n")
    put(tmp_path, "/home/legacy/old-deploy/copy.pem", KEY_PEM)
    put(tmp_path, "/home/legacy/old-deploy/chain.pem", "-----BEGIN CERTIFICATE-----\nx\n")
    put(tmp_path, "/home/legacy/old-deploy/tool.py", "")
    put(tmp_path, "/home/legacy/.cache/pip/x.env", "")
    put(tmp_path, "/home/legacy/venv/pyvenv.cfg", "")
    put(tmp_path, "/home/legacy/venv/lib/site.env", "")
    put(
        tmp_path,
        "/srv/compose/sim/docker-compose.yml",
        "services:\n  a:\n    build: .\n    env_file: /srv/simsvc/.env\n",
    )
    put(tmp_path, "/srv/compose/sim/Dockerfile", "FROM python:3.11\n")
    put(tmp_path, "/srv/compose/sim/jobs/nightly.py", "")
    found = discover(tmp_path)
    sweep = found["sweep"]
    assert sweep["roots"] == ["/srv", "/home/legacy"]  # the default roots that exist here
    assert sweep["truncated"] is False and sweep["hit"] == []
    strays = {f["path"]: (f["kind"], f["source"]) for f in sweep["files"]}
    assert strays == {
        "/home/legacy/old-deploy/.env": ("env", "sweep:/home/legacy"),
        "/home/legacy/old-deploy/copy.pem": ("key", "sweep:/home/legacy"),
        # The Compose project is a stray; the Dockerfile it builds is its own, not a stray.
        "/srv/compose/sim/docker-compose.yml": ("compose", "sweep:/srv"),
    }
    assert by_path(found["dockerfiles"])["/srv/compose/sim/Dockerfile"]["source"] == (
        "compose:/srv/compose/sim/docker-compose.yml build"
    )
    # The service's own .env keeps the source that named it.
    assert by_path(found["env_files"])["/srv/simsvc/.env"]["source"].startswith("systemd:simsvc.service")
    # A stray Compose project is an application: its code is fetched; a stray script alone is not.
    assert by_path(found["python_sources"])["/srv/compose/sim/jobs/nightly.py"]["source"] == (
        "compose:/srv/compose/sim/docker-compose.yml directory"
    )
    assert "/home/legacy/old-deploy/tool.py" not in by_path(found["python_sources"])


def test_roots_and_extra_paths_come_from_variables(tmp_path: Path) -> None:
    put(tmp_path, "/data/apps/x/.env", "A=1\n")
    put(tmp_path, "/opt/y/.env", "A=1\n")
    put(tmp_path, "/etc/sim/config", "A=1\n")
    put(tmp_path, "/etc/sim/extra.env", "A=1\n")
    put(tmp_path, "/srv/tool/run.py", "")
    found = discover(tmp_path, roots=("/data/*",), extra_paths=("/etc/sim/*", "/srv/tool"))
    assert found["sweep"]["roots"] == ["/data/apps"]
    assert set(by_path(found["env_files"])) == {"/data/apps/x/.env", "/etc/sim/extra.env"}
    assert by_path(found["other_files"]) == {
        "/etc/sim/config": {"path": "/etc/sim/config", "source": "variable:preaudit_discovery_extra_paths"}
    }
    assert by_path(found["python_sources"])["/srv/tool/run.py"]["source"] == "variable:preaudit_discovery_extra_paths"


def test_the_file_count_bound_stops_the_sweep_and_says_where(tmp_path: Path) -> None:
    for i in range(30):
        put(tmp_path, f"/opt/bulk/f{i:02d}.txt", "")
    put(tmp_path, "/srv/late/.env", "A=1\n")
    found = discover(tmp_path, roots=("/opt", "/srv"), max_files=10)
    sweep = found["sweep"]
    assert sweep["truncated"] is True and sweep["hit"] == ["max_files"]
    assert sweep["examined"] == 10
    assert sweep["incomplete"] == ["/opt", "/srv"]
    assert sweep["bounds"] == {"max_files": 10, "max_file_bytes": 1048576, "max_seconds": 10.0, "max_depth": 8}
    assert found["env_files"] == []
    assert "stopped at max_files" in D.looked_at(found)


def test_the_size_bound_names_the_file_it_did_not_list(tmp_path: Path) -> None:
    put(tmp_path, "/opt/a/.env", "A=" + "x" * 200 + "\n")
    put(tmp_path, "/opt/b/.env", "A=1\n")
    found = discover(tmp_path, roots=("/opt",), max_file_bytes=100)
    assert [e["path"] for e in found["env_files"]] == ["/opt/b/.env"]
    assert found["sweep"]["skipped"] == [{"path": "/opt/a/.env", "reason": "203 bytes, over max_file_bytes"}]
    assert found["sweep"]["truncated"] is False


def test_the_time_bound_stops_the_sweep(tmp_path: Path) -> None:
    put(tmp_path, "/opt/a/.env", "A=1\n")
    put(tmp_path, "/srv/b/.env", "A=1\n")
    ticks = iter(range(1000))
    options = D.Options(roots=("/opt", "/srv"), max_seconds=3)
    found = D.discover(str(tmp_path), options, lambda argv, timeout: (127, "", ""), clock=lambda: float(next(ticks)))
    sweep = found["sweep"]
    assert sweep["truncated"] is True and sweep["hit"] == ["max_seconds"]
    assert sweep["incomplete"]


def test_the_depth_bound_is_reported_too(tmp_path: Path) -> None:
    put(tmp_path, "/opt/a/b/c/d/.env", "A=1\n")
    found = discover(tmp_path, roots=("/opt",), max_depth=2)
    assert found["env_files"] == []
    assert found["sweep"]["hit"] == ["max_depth"] and found["sweep"]["incomplete"] == ["/opt"]
    assert found["sweep"]["truncated"] is False  # named where, but the walks did finish


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (".env", "env"),
        (".env.production", "env"),
        ("app.env", "env"),
        (".env.example", None),
        ("app.env.dist", None),
        ("server.key", "key"),
        ("bundle.pem", "key"),
        ("docker-compose.override.yml", "compose"),
        ("compose.yaml", "compose"),
        ("Dockerfile", "dockerfile"),
        ("api.Dockerfile", "dockerfile"),
        ("requirements-dev.txt", "requirements"),
        ("pyproject.toml", "requirements"),
        ("main.py", "python"),
        ("notes.txt", None),
    ],
)
def test_file_kinds_by_name(name: str, kind: str | None) -> None:
    assert D.file_kind(name) == kind


def test_discovered_items_know_their_lists() -> None:
    platform = {"env_files": [{"path": "/a", "source": "s"}]}
    assert D.discovered_items(platform, "discovery.env_files") == [{"path": "/a", "source": "s"}]
    with pytest.raises(ValueError, match="unknown discovery list"):
        D.discovered_items(platform, "discovery.nothing")


@pytest.mark.parametrize("name", ["host_audit", "host_files"])
def test_both_modules_document_the_discovery_options_and_the_result(name: str) -> None:
    module = library(name, uses=("preaudit_discovery",))
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    for option, spec in D.ARGUMENT_SPEC.items():
        assert options[option]["type"] == spec["type"], option
        assert options[option].get("default") == spec.get("default"), option
    assert "platform" in yaml.safe_load(module.RETURN)
