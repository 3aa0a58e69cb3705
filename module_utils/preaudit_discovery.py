# Copyright: preaudit contributors. Apache-2.0.
"""Where the platform lives on a host, found from the host's own configuration.

Runs on the target (standard library only, Python 3.11+), inside library/host_audit.py and
library/host_files.py, so that the audit and the file fetch each stay one module call per host.
Nothing here names a particular installation: the platform is wherever the host's systemd
units, nginx configuration and Docker Compose projects say it is, plus whatever a bounded sweep
of the usual application roots finds that nothing references any more.

Every function takes ``root``, the directory that stands for ``/`` (``/`` on a host, a fixture
tree in tests); every path in the result is a path on the host, never prefixed with ``root``.

Sources, in order:

1. systemd services: ``*.service`` units under /etc/systemd/system, /usr/local/lib/systemd/system,
   /lib/systemd/system and /usr/lib/systemd/system, with their drop-ins, that are not Debian's
   own: the unit file is under /etc/systemd/system, or no dpkg package owns it, or it is named
   by ``units``. Read: ``WorkingDirectory=``, ``EnvironmentFile=`` (leading ``-`` stripped),
   ``ExecStart=`` (the script or directory it runs), ``User=``, ``Group=``.
2. nginx: ``nginx -T`` when nginx is installed (its ``# configuration file X:`` headers give each
   item's file and line), else /etc/nginx/nginx.conf and its includes read from disk: server
   blocks with ``listen``, ``server_name``, ``ssl_certificate``, ``ssl_certificate_key``,
   ``root``, ``proxy_pass``.
3. Docker Compose projects: compose files in the working directories and up to two parents, in
   /etc/docker/compose, in the applications' directories and in the sweep roots; their
   ``env_file`` entries and build contexts; Dockerfiles, requirements*.txt and pyproject.toml
   beside them; /etc/docker/daemon.json.
4. The applications' directories (working directories, directories of the scripts ``ExecStart``
   runs, Compose project directories, ``extra_paths`` directories): Python sources, requirement
   files, Dockerfiles, Compose files, environment files and private keys in them.
5. A sweep of ``roots`` (default /opt, /srv, /var/www, /usr/local, /home/*, /root) for stray
   files nothing above references: environment files (``.env``, ``.env.*``, ``*.env``), private
   keys (``*.key``, ``*.pem`` holding ``PRIVATE KEY``), Compose files, Dockerfiles and
   requirement files.

Walks (4 and 5) share one budget: files examined (``max_files``), seconds (``max_seconds``),
directory depth below each start (``max_depth``); a file over ``max_file_bytes`` is not listed
(it is named under ``sweep.skipped``). The bounds, which of them were hit (``sweep.hit``) and
where (``sweep.incomplete``) are in the result; ``sweep.truncated`` says that the file count or
the time ran out, so that the walks did not finish.

The result (``discover()``), schema version 1; the modules document it in their RETURN:

    version: 1
    services:        [{unit, path, source, user, group, working_directory,
                       environment_files: [path], exec_paths: [path], app_dirs: [path]}]
    env_files:       [{path, source, service, user, group}]
    compose_files:   [{path, source, project_dir, env_files: [path], build_contexts: [path]}]
    dockerfiles:     [{path, source}]
    requirements:    [{path, source}]          requirements*.txt and pyproject.toml
    python_sources:  [{path, source}]
    private_keys:    [{path, source}]
    certificates:    [{path, source}]
    other_files:     [{path, source}]          extra_paths files of no known kind
    tls:             [{server_names, listen, certificate, private_key, source}]
    nginx:           {method: "nginx -T" | "files" | null, error, servers: [{server_names,
                       listen, certificates, private_keys, roots, proxy_pass, source}]}
    daemon_json:     {path, source} | null
    sweep:           {roots, bounds: {max_files, max_file_bytes, max_seconds, max_depth},
                      truncated, hit: [bound], incomplete: [dir], examined, seconds,
                      files: [{path, kind, source}], skipped: [{path, reason}]}
    errors:          [message]

``source`` says where an item came from, e.g. ``systemd:app.service EnvironmentFile=
/etc/systemd/system/app.service:7``, ``nginx -T /etc/nginx/sites-enabled/app:12`` (``nginx
/etc/nginx/sites-enabled/app:12`` when the files were read because nginx -T failed),
``compose:/srv/app/docker-compose.yml env_file``, ``sweep:/opt``,
``variable:preaudit_discovery_extra_paths``. An item found by several sources keeps the first.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_ROOTS = ("/opt", "/srv", "/var/www", "/usr/local", "/home/*", "/root")
DEFAULT_MAX_FILES = 20000
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
DEFAULT_MAX_SECONDS = 10.0
DEFAULT_MAX_DEPTH = 8
# The module options both modules accept, with the inventory variable playbooks/scan.yml maps
# onto each (documented in the modules' DOCUMENTATION).
ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "discovery_roots": {"type": "list", "elements": "str"},
    "discovery_extra_paths": {"type": "list", "elements": "str", "default": []},
    "discovery_units": {"type": "list", "elements": "str", "default": []},
    "discovery_max_files": {"type": "int", "default": DEFAULT_MAX_FILES},
    "discovery_max_file_bytes": {"type": "int", "default": DEFAULT_MAX_FILE_BYTES},
    "discovery_max_seconds": {"type": "float", "default": DEFAULT_MAX_SECONDS},
    "discovery_max_depth": {"type": "int", "default": DEFAULT_MAX_DEPTH},
}
CATEGORIES = (
    "env_files",
    "compose_files",
    "dockerfiles",
    "requirements",
    "python_sources",
    "private_keys",
    "certificates",
    "other_files",
)
UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
ADMIN_UNIT_DIR = "/etc/systemd/system"
DPKG_INFO = "/var/lib/dpkg/info"
NGINX_BINARIES = ("/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
NGINX_CONF = "/etc/nginx/nginx.conf"
COMPOSE_DIR = "/etc/docker/compose"
DAEMON_JSON = "/etc/docker/daemon.json"
EXTRA_PATHS_SOURCE = "variable:preaudit_discovery_extra_paths"
UNITS_SOURCE = "variable:preaudit_discovery_units"
COMMAND_TIMEOUT = 20.0
COMPOSE_PARENT_LEVELS = 2
PRIVATE_KEY_MARKER = b"PRIVATE KEY"
SNIFF_BYTES = 65536
# Directories that hold no application's own files: version control, caches, installed packages.
SKIP_DIR_NAMES = frozenset(
    [
        ".git", ".hg", ".svn", "__pycache__", "node_modules", ".tox", ".nox", ".cache", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", "site-packages", "dist-packages", ".npm", ".cargo", ".rustup",
    ]
)  # fmt: skip
# An interpreter or system tool that ExecStart runs is not the application; its arguments are.
SYSTEM_BIN_DIRS = frozenset(["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"])
# Never an application's own directory, however a unit names it: walking them would sweep the OS.
SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/run", "/sbin", "/sys", "/usr/bin", "/usr/lib",
    "/usr/sbin", "/usr/share", "/usr/include", "/var/lib/dpkg", "/var/lib/docker", "/var/cache",
)  # fmt: skip
ENV_TEMPLATES = (".example", ".sample", ".template", ".dist")
COMPOSE_NAME = re.compile(r"^(docker-)?compose(\.[\w.-]+)?\.ya?ml$")
REQUIREMENTS_NAME = re.compile(r"^requirements[\w.-]*\.txt$")

Runner = Callable[[list[str], float], tuple[int, str, str]]


def run_command(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a missing program or a timeout is exit 127 with the reason."""
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except OSError as exc:
        return 127, "", f"cannot run {argv[0]}: {exc}"
    except subprocess.TimeoutExpired:
        return 127, "", f"{argv[0]} timed out after {timeout:g} s"
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


# -- options and budget ---------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What to look at and how far; module parameters and inventory variables set them."""

    roots: tuple[str, ...] = DEFAULT_ROOTS
    extra_paths: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    max_files: int = DEFAULT_MAX_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_depth: int = DEFAULT_MAX_DEPTH

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Options:
        """From a module's parameters (ARGUMENT_SPEC names); an unset roots keeps the defaults."""
        roots = params.get("discovery_roots")
        return cls(
            roots=tuple(roots) if roots is not None else DEFAULT_ROOTS,
            extra_paths=tuple(params.get("discovery_extra_paths") or ()),
            units=tuple(params.get("discovery_units") or ()),
            max_files=int(params.get("discovery_max_files") or DEFAULT_MAX_FILES),
            max_file_bytes=int(params.get("discovery_max_file_bytes") or DEFAULT_MAX_FILE_BYTES),
            max_seconds=float(params.get("discovery_max_seconds") or DEFAULT_MAX_SECONDS),
            max_depth=int(params.get("discovery_max_depth") or DEFAULT_MAX_DEPTH),
        )

    def bounds(self) -> dict[str, Any]:
        return {
            "max_files": self.max_files,
            "max_file_bytes": self.max_file_bytes,
            "max_seconds": self.max_seconds,
            "max_depth": self.max_depth,
        }


@dataclass
class Budget:
    """What the walks may still spend; records which bound stopped them and where."""

    max_files: int
    max_seconds: float
    max_depth: int
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0
    examined: int = 0
    hit: set[str] = field(default_factory=set)
    incomplete: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def exhausted(self) -> bool:
        if self.examined >= self.max_files:
            self.hit.add("max_files")
        elif self.clock() - self.started >= self.max_seconds:
            self.hit.add("max_seconds")
        return bool(self.hit - {"max_depth"})

    def cut(self, where: str, bound: str | None = None) -> None:
        if bound:
            self.hit.add(bound)
        if where not in self.incomplete:
            self.incomplete.append(where)

    def seconds(self) -> float:
        return round(self.clock() - self.started, 3)


# -- file system helpers (host paths under a root) ------------------------------------------


def local(root: str, path: str) -> str:
    """The file that holds host path ``path`` when ``root`` stands for ``/``."""
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def host_path(root: str, path: str) -> str:
    """The host path of a local file under ``root``."""
    if root in ("", "/"):
        return path
    relative = os.path.relpath(path, root)
    return "/" if relative == "." else "/" + relative


def normalise(path: str) -> str:
    return os.path.normpath(path) if path.startswith("/") else path


def lstat(root: str, path: str) -> os.stat_result | None:
    try:
        return os.lstat(local(root, path))
    except OSError:
        return None


def is_file(root: str, path: str) -> bool:
    st = lstat(root, path)
    return st is not None and stat.S_ISREG(st.st_mode)


def is_dir(root: str, path: str) -> bool:
    st = lstat(root, path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def read_text(root: str, path: str, limit: int = DEFAULT_MAX_FILE_BYTES, follow: bool = False) -> str | None:
    """A regular file's text (at most ``limit`` bytes), None when it is absent or unreadable.
    Links are read only with ``follow`` (nginx follows them: sites-enabled holds links)."""
    target = resolve_link(root, path) if follow else path
    if target is None or not is_file(root, target):
        return None
    path = target
    try:
        with open(local(root, path), "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def resolve_link(root: str, path: str, hops: int = 8) -> str | None:
    """The host path a chain of symbolic links ends at (targets taken inside ``root``), or None
    for a loop or a dangling link."""
    for _ in range(hops):
        st = lstat(root, path)
        if st is None:
            return None
        if not stat.S_ISLNK(st.st_mode):
            return path
        try:
            target = os.readlink(local(root, path))
        except OSError:
            return None
        path = normalise(target if target.startswith("/") else os.path.join(os.path.dirname(path), target))
    return None


def holds_private_key(root: str, path: str) -> bool:
    try:
        with open(local(root, path), "rb") as handle:
            return PRIVATE_KEY_MARKER in handle.read(SNIFF_BYTES)
    except OSError:
        return False


def expand(root: str, pattern: str) -> list[str]:
    """Host paths matching an absolute glob (a plain path matches itself when it exists)."""
    if not any(c in pattern for c in "*?["):
        return [normalise(pattern)] if lstat(root, pattern) is not None else []
    return sorted(host_path(root, p) for p in glob.glob(local(root, pattern)))


def is_system_tree(path: str) -> bool:
    return any(path == t or path.startswith(t + "/") for t in SYSTEM_TREES)


def app_dir_allowed(path: str) -> bool:
    """Whether ``path`` may be walked as an application's directory: two levels deep at least
    (/opt/app, not /opt) and outside the operating system's own trees."""
    return path.startswith("/") and len([p for p in path.split("/") if p]) >= 2 and not is_system_tree(path)


def file_kind(name: str) -> str | None:
    """What a file is by its name: env, key (a candidate: needs the marker), compose, dockerfile,
    requirements, python; None for anything else."""
    if name == ".env":
        return "env"
    if (name.startswith(".env.") or name.endswith(".env")) and not name.endswith(ENV_TEMPLATES):
        return "env"
    if name.endswith((".key", ".pem")):
        return "key"
    if COMPOSE_NAME.match(name):
        return "compose"
    if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
        return "dockerfile"
    if REQUIREMENTS_NAME.match(name) or name == "pyproject.toml":
        return "requirements"
    if name.endswith(".py"):
        return "python"
    return None


KIND_CATEGORY = {
    "env": "env_files",
    "key": "private_keys",
    "compose": "compose_files",
    "dockerfile": "dockerfiles",
    "requirements": "requirements",
    "python": "python_sources",
}


def is_virtualenv(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "pyvenv.cfg"))


def walk(root: str, top: str, budget: Budget, skip: set[str]) -> Iterator[tuple[str, os.stat_result]]:
    """(host path, stat) of the regular files under ``top``: no symbolic link followed, skipped
    directories (SKIP_DIR_NAMES, virtual environments, ``skip``) left out, within ``budget``."""
    stack = [(top, 0)]
    while stack:
        directory, depth = stack.pop()
        if budget.exhausted():
            budget.cut(top)
            return
        try:
            entries = sorted(os.scandir(local(root, directory)), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            path = os.path.join(directory, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name in SKIP_DIR_NAMES or path in skip or is_virtualenv(entry.path):
                    continue
                if depth + 1 > budget.max_depth:
                    budget.cut(top, "max_depth")
                    continue
                subdirs.append((path, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                if budget.examined >= budget.max_files:
                    budget.cut(top, "max_files")
                    return
                budget.examined += 1
                yield path, st
        stack.extend(reversed(subdirs))


# -- systemd --------------------------------------------------------------------------------


def unit_settings(text: str) -> list[tuple[str, str, str, int]]:
    """(section, key, value, line) of a unit file, continuation lines joined, comments dropped."""
    settings = []
    section = ""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending:
            start = number
            if not line or line[0] in "#;":
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, _sep, value = line.partition("=")
            settings.append((section, key.strip(), value.strip(), start))
    return settings


def dpkg_owned_units(root: str) -> set[str]:
    """Unit file paths that a dpkg package owns, usr-merged (/usr/lib/x and /lib/x are one file)."""
    owned = set()
    for listing in glob.glob(os.path.join(local(root, DPKG_INFO), "*.list")):
        try:
            with open(listing, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if "/systemd/system/" in line:
                        owned.add(usr_merged(line.strip()))
        except OSError:
            continue
    return owned


def usr_merged(path: str) -> str:
    return path[len("/usr") :] if path.startswith("/usr/lib/") else path


def unit_files(root: str) -> dict[str, str]:
    """Unit name -> host path of its file: the first of UNIT_DIRS wins, as systemd reads them.
    Links (aliases, masks, enablement) are not unit files of their own."""
    found: dict[str, str] = {}
    seen_dirs = set()
    for directory in UNIT_DIRS:
        real = os.path.realpath(local(root, directory))
        if real in seen_dirs or not os.path.isdir(real):
            continue
        seen_dirs.add(real)
        for name in sorted(os.listdir(real)):
            path = directory + "/" + name
            if name.endswith(".service") and name not in found and is_file(root, path):
                found[name] = path
    return found


def drop_ins(root: str, unit: str) -> list[str]:
    """Host paths of the unit's drop-in files in the order systemd applies them (by file name;
    /etc overrides a drop-in of the same name elsewhere)."""
    by_name: dict[str, str] = {}
    for directory in reversed(UNIT_DIRS):
        for path in expand(root, f"{directory}/{unit}.d/*.conf"):
            by_name[os.path.basename(path)] = path
    return [by_name[name] for name in sorted(by_name)]


def platform_units(root: str, named: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(unit, host path, why) of the units that are the platform's rather than Debian's."""
    files = unit_files(root)
    owned = dpkg_owned_units(root)
    chosen = []
    for unit, path in sorted(files.items()):
        if unit in named or unit.removesuffix(".service") in named:
            chosen.append((unit, path, UNITS_SOURCE))
        elif path.startswith(ADMIN_UNIT_DIR + "/") or usr_merged(path) not in owned:
            chosen.append((unit, path, f"systemd:{unit} {path}"))
    return chosen


@dataclass
class Service:
    unit: str
    path: str
    source: str
    user: str | None = None
    group: str | None = None
    working_directory: dict[str, Any] | None = None
    environment_files: list[dict[str, Any]] = field(default_factory=list)
    exec_start: list[dict[str, Any]] = field(default_factory=list)


def read_service(root: str, unit: str, path: str, source: str) -> Service:
    """The settings discovery needs, after the unit's drop-ins (an empty value resets a list)."""
    service = Service(unit, path, source)
    for file in [path, *drop_ins(root, unit)]:
        for section, key, value, line in unit_settings(read_text(root, file) or ""):
            if section == "Service":
                apply_setting(service, key, value, f"systemd:{unit} {key}= {file}:{line}")
    return service


def apply_setting(service: Service, key: str, value: str, source: str) -> None:
    if key == "User":
        service.user = value or None
    elif key == "Group":
        service.group = value or None
    elif key == "WorkingDirectory":
        path = value.lstrip("-")
        # "~" is the user's home and specifiers (%h, %i) are resolved by systemd only at start.
        usable = path.startswith("/") and "%" not in path
        service.working_directory = {"path": normalise(path), "source": source} if usable else None
    elif key == "EnvironmentFile":
        if not value:
            service.environment_files = []
        elif "%" not in value:
            service.environment_files.append({"path": normalise(value.lstrip("-")), "source": source})
    elif key == "ExecStart":
        if not value:
            service.exec_start = []
        else:
            service.exec_start.append({"command": value, "source": source})


def command_words(command: str) -> list[str]:
    """The words of an ExecStart command line, without systemd's prefixes (@, -, :, +, !)."""
    command = command.lstrip("@-:+!")
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def exec_paths(root: str, command: str, working_directory: str | None) -> list[str]:
    """Files and directories an ExecStart line runs: the program unless it is a system tool,
    and every argument (or --option=value) that names an existing path."""
    words = command_words(command)
    found = []
    for index, word in enumerate(words):
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if value.startswith("-") or "%" in value or "$" in value or not value:
            continue
        if not value.startswith("/"):
            if index == 0 or not working_directory:
                continue
            value = os.path.join(working_directory, value)
        value = normalise(value)
        if index == 0 and os.path.dirname(value) in SYSTEM_BIN_DIRS:
            continue
        if lstat(root, value) is not None and value not in found:
            found.append(value)
    return found


def app_dirs_of(root: str, service: Service, paths: list[str]) -> list[str]:
    dirs = []
    if service.working_directory:
        dirs.append(service.working_directory["path"])
    for path in paths:
        directory = path if is_dir(root, path) else os.path.dirname(path)
        if directory not in SYSTEM_BIN_DIRS:
            dirs.append(directory)
    return [d for d in dict.fromkeys(dirs) if app_dir_allowed(d)]


def describe_service(root: str, service: Service) -> dict[str, Any]:
    wd = service.working_directory["path"] if service.working_directory else None
    paths: list[str] = []
    for item in service.exec_start:
        paths += [p for p in exec_paths(root, item["command"], wd) if p not in paths]
    return {
        "unit": service.unit,
        "path": service.path,
        "source": service.source,
        "user": service.user,
        "group": service.group,
        "working_directory": wd,
        "environment_files": [e["path"] for e in service.environment_files],
        "exec_paths": paths,
        "app_dirs": app_dirs_of(root, service, paths),
    }


# -- nginx ----------------------------------------------------------------------------------

NGINX_HEADER = re.compile(r"^# configuration file (.+):$")


def nginx_dump_files(text: str) -> dict[str, str]:
    """Path -> text of each file in ``nginx -T`` output (each headed ``# configuration file X:``)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = NGINX_HEADER.match(line)
        if match:
            current = files.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return dict((path, "\n".join(lines)) for path, lines in files.items())


def nginx_tokens(text: str) -> Iterator[tuple[str, int]]:
    """(token, line): words (quotes removed), ``{``, ``}`` and ``;``; comments dropped."""
    i = 0
    line = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c, line
            i += 1
        else:
            word, i, lines = nginx_word(text, i)
            yield word, line
            line += lines


def nginx_word(text: str, i: int) -> tuple[str, int, int]:
    """One word starting at ``i``: (the word, the index after it, newlines inside it)."""
    out = []
    lines = 0
    quote = text[i] if text[i] in "\"'" else None
    if quote:
        i += 1
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                return "".join(out), i + 1, lines
        elif c == "{" and out and out[-1] == "$":
            # ${variable}: the braces belong to the word.
            end = text.find("}", i)
            end = len(text) - 1 if end < 0 else end
            out.append(text[i : end + 1])
            i = end + 1
            continue
        elif c.isspace() or c in "{;}":
            break
        lines += c == "\n"
        out.append(c)
        i += 1
    return "".join(out), i, lines


@dataclass
class Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None


class NginxConfig:
    """The configuration tree as nginx reads it, includes spliced in where they appear.

    ``load`` returns a file's text (None if absent) and ``matches`` the files an include pattern
    names, so that the same parser reads ``nginx -T`` output and the files on disk.
    """

    MAX_INCLUDE_DEPTH = 16

    def __init__(self, load: Callable[[str], str | None], matches: Callable[[str], list[str]], prefix: str) -> None:
        self.load = load
        self.matches = matches
        self.prefix = prefix

    def parse(self, path: str, depth: int = 0) -> list[Directive]:
        text = self.load(path)
        if text is None or depth > self.MAX_INCLUDE_DEPTH:
            return []
        tokens = nginx_tokens(text)
        return self._block(tokens, path, depth)

    def _block(self, tokens: Iterator[tuple[str, int]], path: str, depth: int) -> list[Directive]:
        directives: list[Directive] = []
        words: list[tuple[str, int]] = []
        for word, line in tokens:
            if word == "}":
                break
            if word == "{":
                if words:
                    block = self._block(tokens, path, depth)
                    directives.append(Directive(words[0][0], [w for w, _ in words[1:]], path, words[0][1], block))
                words = []
            elif word == ";":
                if words:
                    directives += self._statement(words, path, depth)
                words = []
            else:
                words.append((word, line))
        return directives

    def _statement(self, words: list[tuple[str, int]], path: str, depth: int) -> list[Directive]:
        name, line = words[0]
        args = [w for w, _ in words[1:]]
        if name != "include" or not args:
            return [Directive(name, args, path, line)]
        pattern = args[0] if args[0].startswith("/") else os.path.join(self.prefix, args[0])
        included: list[Directive] = []
        for match in self.matches(pattern):
            included += self.parse(match, depth + 1)
        return included


def glob_regex(pattern: str) -> re.Pattern[str]:
    """An include glob as a regex: ``*`` and ``?`` stay within one path component, as glob(3)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        end = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif end > 0:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def dump_matcher(files: dict[str, str]) -> Callable[[str], list[str]]:
    """The files of an ``nginx -T`` dump an include pattern names."""

    def matches(pattern: str) -> list[str]:
        regex = glob_regex(pattern)
        return sorted(p for p in files if regex.match(p))

    return matches


def disk_matcher(root: str) -> Callable[[str], list[str]]:
    """The files on disk an include pattern names (links included: nginx follows them)."""

    def matches(pattern: str) -> list[str]:
        return [p for p in expand(root, pattern) if is_file(root, resolve_link(root, p) or p)]

    return matches


def nginx_binary(root: str) -> str | None:
    for path in NGINX_BINARIES:
        if os.path.exists(local(root, path)):
            return path
    return None


def nginx_tree(root: str, runner: Runner) -> tuple[list[Directive], str | None, str | None]:
    """(the configuration tree, how it was read, why ``nginx -T`` could not be used)."""
    binary = nginx_binary(root)
    error = None
    if binary is not None:
        code, out, err = runner([binary, "-T"], COMMAND_TIMEOUT)
        files = nginx_dump_files(out) if code == 0 else {}
        if files:
            main = next(iter(files))
            config = NginxConfig(files.get, dump_matcher(files), os.path.dirname(main))
            return config.parse(main), "nginx -T", None
        lines = [line for line in (err or out).splitlines() if line.strip()]
        error = f"nginx -T failed (exit {code}): {lines[-1] if lines else 'no output'}"
    if not is_file(root, NGINX_CONF):
        return [], None, error
    config = NginxConfig(lambda p: read_text(root, p, follow=True), disk_matcher(root), os.path.dirname(NGINX_CONF))
    return config.parse(NGINX_CONF), "files", error


def nginx_servers(tree: list[Directive], method: str) -> list[dict[str, Any]]:
    """Every server block (http and stream), with TLS files inherited from the enclosing context."""
    servers: list[dict[str, Any]] = []

    def visit(directives: list[Directive], inherited: dict[str, list[Directive]]) -> None:
        own = dict(inherited)
        for key in ("ssl_certificate", "ssl_certificate_key"):
            here = [d for d in directives if d.name == key and d.args]
            if here:
                own[key] = here
        for directive in directives:
            if directive.block is None:
                continue
            if directive.name == "server":
                servers.append(describe_server(directive, own, method))
            elif directive.name in ("http", "stream"):
                visit(directive.block, own)

    visit(tree, {})
    return servers


def collect_args(directives: list[Directive], name: str) -> list[Directive]:
    found = []
    for directive in directives:
        if directive.name == name and directive.args:
            found.append(directive)
        if directive.block is not None and directive.name not in ("server", "upstream"):
            found += collect_args(directive.block, name)
    return found


def where(method: str, directive: Directive) -> str:
    # "nginx -T FILE:LINE" when nginx itself dumped its configuration, "nginx FILE:LINE" when
    # the files were read from disk because nginx -T failed.
    how = "nginx -T" if method == "nginx -T" else "nginx"
    return f"{how} {directive.file}:{directive.line}"


def describe_server(server: Directive, inherited: dict[str, list[Directive]], method: str) -> dict[str, Any]:
    body = server.block or []
    listen = [" ".join(d.args) for d in body if d.name == "listen" and d.args]
    names = [n for d in body if d.name == "server_name" for n in d.args]
    certs = [d for d in body if d.name == "ssl_certificate" and d.args] or inherited.get("ssl_certificate", [])
    keys = [d for d in body if d.name == "ssl_certificate_key" and d.args] or inherited.get("ssl_certificate_key", [])
    tls = any(re.search(r"(^|\s)(ssl|quic)(\s|$)", entry) for entry in listen) or any(
        d.name == "ssl" and d.args == ["on"] for d in body
    )
    return {
        "server_names": names,
        "listen": listen,
        "tls": tls or bool([d for d in body if d.name == "ssl_certificate"]),
        "certificates": [{"path": d.args[0], "source": where(method, d)} for d in certs if usable_file(d.args[0])],
        "private_keys": [{"path": d.args[0], "source": where(method, d)} for d in keys if usable_file(d.args[0])],
        "roots": [d.args[0] for d in collect_args(body, "root")],
        "proxy_pass": [d.args[0] for d in collect_args(body, "proxy_pass")],
        "source": where(method, server),
    }


def usable_file(value: str) -> bool:
    """A path discovery can follow: absolute, no variable ($ssl_server_name), not inline data."""
    return value.startswith("/") and "$" not in value


def tls_items(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per certificate of a TLS server, paired with the key in the same position."""
    items = []
    for server in servers:
        if not server["tls"]:
            continue
        keys = server["private_keys"]
        for index, cert in enumerate(server["certificates"]):
            key = keys[index] if index < len(keys) else (keys[-1] if keys else None)
            items.append(
                {
                    "server_names": server["server_names"],
                    "listen": server["listen"],
                    "certificate": cert["path"],
                    "private_key": key["path"] if key else None,
                    "source": server["source"],
                }
            )
    return items


# -- Docker Compose -------------------------------------------------------------------------
#
# The host may have no YAML library (a minimal Debian has no python3-yaml), so Compose files are
# not parsed as YAML. Only the keys discovery needs are read, line by line: `env_file` (a scalar,
# a flow list, or a block list of strings or of {path, required} mappings) and `build` (a scalar
# context, or a mapping with `context` and `dockerfile`), each with the service it belongs to.
# Anything else in the file is ignored; values with ${VARIABLES} are skipped, since the
# environment Compose would interpolate them from is not known here.

YAML_KEY = re.compile(r"^(\s*)(-\s+)?([\w.-]+)\s*:(?:\s+(.*))?$")


def strip_comment(line: str) -> str:
    """A YAML line without its comment (a # at the start or after a space, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def flow_items(value: str) -> list[str]:
    """Items of a one-line flow sequence ``[a, "b", {path: c}]`` (a mapping gives its path)."""
    items = []
    for part in re.findall(r"\{[^}]*\}|[^,\[\]]+", value):
        part = part.strip()
        if part.startswith("{"):
            match = re.search(r"path\s*:\s*([^,}]+)", part)
            part = match.group(1) if match else ""
        if unquote(part):
            items.append(unquote(part))
    return items


@dataclass
class ComposeRef:
    key: str  # env_file or build (value: the context; dockerfile: relative to it)
    value: str
    line: int
    service: str | None
    dockerfile: str = "Dockerfile"


def compose_refs(text: str) -> list[ComposeRef]:
    """The env_file and build entries of a Compose file, read textually (see above)."""
    lines = [strip_comment(line) for line in text.splitlines()]
    refs: list[ComposeRef] = []
    service = None
    service_indent: int | None = None
    in_services = False
    for number, line in enumerate(lines, 1):
        match = YAML_KEY.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        key, value = match.group(3), (match.group(4) or "").strip()
        if indent == 0:
            in_services, service, service_indent = key == "services", None, None
            continue
        if in_services and (service_indent is None or indent <= service_indent) and not match.group(2):
            service, service_indent = key, indent
            continue
        if key == "env_file":
            refs += [ComposeRef("env_file", v, number, service) for v in values_of(value, lines, number, indent)]
        elif key == "build":
            refs += build_refs(value, lines, number, indent, service)
    return [r for r in refs if r.value and "$" not in r.value + r.dockerfile]


def values_of(value: str, lines: list[str], number: int, indent: int) -> list[str]:
    """A key's value as a list of strings: scalar, flow list, or the block below it."""
    if value.startswith("["):
        return flow_items(value)
    if value:
        return [unquote(value)]
    found = []
    for line in lines[number:]:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        item = line.strip()
        if item.startswith("-"):
            item = item[1:].strip()
            if not item.startswith("path:") and ":" not in item.split("/")[0]:
                found.append(unquote(item))
                continue
        if item.startswith("path:"):
            found.append(unquote(item[len("path:") :]))
    return found


def build_refs(value: str, lines: list[str], number: int, indent: int, service: str | None) -> list[ComposeRef]:
    """A service's build: a scalar context, or a mapping with context (default .) and dockerfile."""
    if value:
        return [ComposeRef("build", unquote(value), number, service)]
    ref = ComposeRef("build", ".", number, service)
    for line in lines[number:]:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        match = YAML_KEY.match(line)
        if match and match.group(4) and match.group(3) == "context":
            ref.value = unquote(match.group(4))
        elif match and match.group(4) and match.group(3) == "dockerfile":
            ref.dockerfile = unquote(match.group(4))
    return [ref]


def resolve(base: str, value: str) -> str | None:
    """``value`` relative to directory ``base``; None for what cannot be followed (~, URLs)."""
    if value.startswith("~") or "://" in value or value.startswith("git@"):
        return None
    return normalise(value if value.startswith("/") else os.path.join(base, value))


# -- the discovery --------------------------------------------------------------------------


class Discovery:
    """Accumulates items by category (the first source of a path wins) and the sweep's record."""

    def __init__(self, root: str, options: Options, runner: Runner, clock: Callable[[], float]) -> None:
        self.root = root
        self.options = options
        self.runner = runner
        self.budget = Budget(options.max_files, options.max_seconds, options.max_depth, clock)
        self.items: dict[str, dict[str, dict[str, Any]]] = dict((c, {}) for c in CATEGORIES)
        self.services: list[dict[str, Any]] = []
        self.nginx: dict[str, Any] = {"method": None, "error": None, "servers": []}
        self.tls: list[dict[str, Any]] = []
        self.walked: set[str] = set()
        self.compose_done: set[str] = set()
        self.stray: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.errors: list[str] = []

    # -- bookkeeping --------------------------------------------------------------------------

    def known(self, path: str) -> bool:
        return any(path in found for found in self.items.values())

    def add(self, category: str, path: str, source: str, **extra: Any) -> bool:
        """Record an existing regular file under ``category`` (a link: the file it leads to, since
        the fetch never follows links); False if absent or already known."""
        target = resolve_link(self.root, path)
        if target is None or target in self.items[category] or not is_file(self.root, target):
            return False
        path = target
        self.items[category][path] = dict({"path": path, "source": source}, **extra)
        if category == "compose_files":
            self.compose(path, source)
        return True

    def add_by_kind(self, kind: str, path: str, source: str, size: int) -> bool:
        """A file found by name; a key counts only with a private key block, a file over the size
        bound is named as skipped instead."""
        if size > self.options.max_file_bytes:
            self.skipped.append({"path": path, "reason": f"{size} bytes, over max_file_bytes"})
            return False
        if kind == "key" and not holds_private_key(self.root, path):
            return False
        extra: dict[str, Any] = {"service": None, "user": None, "group": None} if kind == "env" else {}
        return self.add(KIND_CATEGORY[kind], path, source, **extra)

    # -- sources ------------------------------------------------------------------------------

    def systemd(self) -> list[tuple[str, str]]:
        """The platform's services; returns their (application directory, source) pairs."""
        dirs = []
        units = platform_units(self.root, self.options.units)
        found = set(u for u, _p, _s in units)
        missing = [n for n in self.options.units if n not in found and n + ".service" not in found]
        if missing:
            self.errors.append(f"units named by preaudit_discovery_units not found: {', '.join(missing)}")
        for unit, path, source in units:
            service = read_service(self.root, unit, path, source)
            described = describe_service(self.root, service)
            self.services.append(described)
            for env in service.environment_files:
                self.add("env_files", env["path"], env["source"], service=unit, user=service.user, group=service.group)
            wd = service.working_directory
            for directory in described["app_dirs"]:
                origin = wd["source"] if wd and wd["path"] == directory else self.exec_source(service)
                dirs.append((directory, origin))
            if wd:
                self.compose_near(wd["path"], wd["source"])
        return dirs

    @staticmethod
    def exec_source(service: Service) -> str:
        return service.exec_start[-1]["source"] if service.exec_start else service.source

    def compose_near(self, directory: str, source: str) -> None:
        """Compose files in ``directory`` and up to COMPOSE_PARENT_LEVELS parents."""
        for level in range(COMPOSE_PARENT_LEVELS + 1):
            where = "same directory" if level == 0 else f"{level} level{'s' if level > 1 else ''} up"
            for path in self.compose_files_in(directory):
                self.add("compose_files", path, f"{source} (Compose file, {where})")
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent

    def compose_files_in(self, directory: str) -> list[str]:
        try:
            names = sorted(os.listdir(local(self.root, directory)))
        except OSError:
            return []
        return [os.path.join(directory, n) for n in names if COMPOSE_NAME.match(n)]

    def compose(self, path: str, source: str) -> None:
        """A Compose file's env_files, build contexts and the build files beside it."""
        directory = os.path.dirname(path)
        refs = compose_refs(read_text(self.root, path, self.options.max_file_bytes) or "")
        env_files: list[str] = []
        contexts: list[str] = []
        for ref in refs:
            target = resolve(directory, ref.value)
            if target is None:
                continue
            if ref.key == "env_file":
                env_files += [] if target in env_files else [target]
                self.add("env_files", target, f"compose:{path} env_file", service=ref.service, user=None, group=None)
                continue
            contexts.append(target)
            dockerfile = resolve(target, ref.dockerfile)
            if dockerfile:
                self.add("dockerfiles", dockerfile, f"compose:{path} build")
        item = self.items["compose_files"][path]
        item.update(project_dir=directory, env_files=env_files, build_contexts=contexts)
        # Compose reads the project directory's .env for interpolation without being told.
        self.add("env_files", directory + "/.env", f"compose:{path} project .env", service=None, user=None, group=None)
        if directory not in self.compose_done:
            self.compose_done.add(directory)
            self.beside(directory, f"compose:{path} directory")

    def beside(self, directory: str, source: str) -> None:
        """Build and dependency files in one directory (not below it)."""
        try:
            names = sorted(os.listdir(local(self.root, directory)))
        except OSError:
            return
        for name in names:
            kind = file_kind(name)
            if kind in ("dockerfile", "requirements", "compose"):
                self.add(KIND_CATEGORY[kind], os.path.join(directory, name), source)

    def app_dir(self, directory: str, source: str) -> None:
        """Every file of a known kind under an application's directory (once: a directory under
        one already walked is not walked again)."""
        if any(directory == d or directory.startswith(d + "/") for d in self.walked):
            return
        if not is_dir(self.root, directory):
            return
        self.walked.add(directory)
        for path, st in walk(self.root, directory, self.budget, self.walked):
            kind = file_kind(os.path.basename(path))
            if kind is not None:
                self.add_by_kind(kind, path, source, st.st_size)

    def nginx_config(self) -> None:
        tree, method, error = nginx_tree(self.root, self.runner)
        servers = nginx_servers(tree, method) if method else []
        self.nginx = {"method": method, "error": error, "servers": servers}
        if error:
            self.errors.append(error)
        for server in servers:
            for cert in server["certificates"]:
                self.add("certificates", cert["path"], cert["source"])
            for key in server["private_keys"]:
                self.add("private_keys", key["path"], key["source"])
        self.tls = tls_items(servers)

    def compose_directory(self) -> None:
        if not is_dir(self.root, COMPOSE_DIR):
            return
        for path, _st in walk(self.root, COMPOSE_DIR, self.budget, set()):
            if COMPOSE_NAME.match(os.path.basename(path)):
                self.add("compose_files", path, f"docker:{COMPOSE_DIR}")

    def extra_paths(self) -> None:
        for pattern in self.options.extra_paths:
            for path in expand(self.root, pattern):
                if is_dir(self.root, path):
                    self.app_dir(path, EXTRA_PATHS_SOURCE)
                    continue
                st = lstat(self.root, path)
                kind = file_kind(os.path.basename(path))
                if st is None or not stat.S_ISREG(st.st_mode):
                    continue
                added = kind is not None and self.add_by_kind(kind, path, EXTRA_PATHS_SOURCE, st.st_size)
                if not added and not self.known(path):
                    self.add("other_files", path, EXTRA_PATHS_SOURCE)

    def sweep_roots(self) -> list[str]:
        roots: list[str] = []
        for pattern in self.options.roots:
            roots += [p for p in expand(self.root, pattern) if is_dir(self.root, p) and p not in roots]
        return roots

    def sweep(self, roots: list[str]) -> None:
        """Stray files under ``roots``: what no source above named (applications already walked
        are not walked again). Compose files go first, so that the files a stray Compose project
        names or holds are reported as its own rather than as strays of their own."""
        found: list[tuple[str, str, str, int]] = []
        for top in roots:
            for path, st in walk(self.root, top, self.budget, self.walked):
                kind = file_kind(os.path.basename(path))
                if kind not in (None, "python"):
                    found.append((kind, path, f"sweep:{top}", st.st_size))
        found.sort(key=lambda hit: hit[0] != "compose")
        for kind, path, source, size in found:
            if self.known(path) or not self.add_by_kind(kind, path, source, size):
                continue
            self.stray.append({"path": path, "kind": kind, "source": source})
            if kind == "compose" and app_dir_allowed(os.path.dirname(path)):
                # A stray project is an application too: its build context holds its code.
                self.app_dir(os.path.dirname(path), f"compose:{path} directory")

    # -- result -------------------------------------------------------------------------------

    def result(self, roots: list[str], daemon_json: dict[str, str] | None) -> dict[str, Any]:
        data: dict[str, Any] = {"version": SCHEMA_VERSION, "services": self.services}
        for category in CATEGORIES:
            data[category] = sorted(self.items[category].values(), key=lambda i: i["path"])
        data["tls"] = self.tls
        data["nginx"] = self.nginx
        data["daemon_json"] = daemon_json
        data["sweep"] = {
            "roots": roots,
            "bounds": self.options.bounds(),
            # A directory below max_depth is named in incomplete; only running out of files or
            # time leaves the roots' search unfinished.
            "truncated": bool(self.budget.hit - {"max_depth"}),
            "hit": sorted(self.budget.hit),
            "incomplete": self.budget.incomplete,
            "examined": self.budget.examined,
            "seconds": self.budget.seconds(),
            "files": self.stray,
            "skipped": self.skipped[:100],
        }
        data["errors"] = self.errors
        return data


def discover(
    root: str = "/",
    options: Options | None = None,
    runner: Runner = run_command,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Everything discovery finds on the host under ``root`` (schema in the module docstring)."""
    found = Discovery(root, options or Options(), runner, clock)
    app_dirs = found.systemd()
    found.nginx_config()
    for directory, source in app_dirs:
        found.app_dir(directory, source)
    found.compose_directory()
    found.extra_paths()
    # Compose projects found so far are applications too: their build context is the code.
    for path, item in list(found.items["compose_files"].items()):
        if app_dir_allowed(item["project_dir"]):
            found.app_dir(item["project_dir"], f"compose:{path} directory")
    daemon = {"path": DAEMON_JSON, "source": f"docker:{DAEMON_JSON}"} if is_file(root, DAEMON_JSON) else None
    roots = found.sweep_roots()
    found.sweep(roots)
    return found.result(roots, daemon)


def files_to_fetch(platform: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, source) of every file a discovery result names, for the file scanners."""
    named: dict[str, str] = {}
    for category in CATEGORIES:
        for item in platform.get(category) or []:
            named.setdefault(item["path"], item["source"])
    daemon = platform.get("daemon_json")
    if daemon:
        named.setdefault(daemon["path"], daemon["source"])
    return sorted(named.items())


def discovered_items(platform: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The items a catalog check's ``paths_from`` names (``discovery.env_files``)."""
    category = name.split(".", 1)[1] if name.startswith("discovery.") else name
    if category not in CATEGORIES:
        raise ValueError(f"unknown discovery list {name}")
    return list(platform.get(category) or [])


def looked_at(platform: dict[str, Any]) -> str:
    """Where discovery looked, in one line, for a result that found nothing."""
    sweep = platform.get("sweep") or {}
    parts = [
        f"{len(platform.get('services') or [])} systemd service(s)",
        f"nginx ({(platform.get('nginx') or {}).get('method') or 'not found'})",
        f"{len(platform.get('compose_files') or [])} Compose file(s)",
        f"a sweep of {', '.join(sweep.get('roots') or []) or 'no root'}",
    ]
    if sweep.get("truncated"):
        parts[-1] += " (stopped at {})".format(", ".join(sweep.get("hit") or []))
    return "; ".join(parts)
