#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Evaluate the catalog's declarative host checks on the target in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_audit
short_description: Evaluate preaudit's declarative host checks in one call
description:
  - Receives the host checks of the preaudit control catalog and evaluates all of them on the
    target, returning for each control its status (pass, fail, error, not_applicable) with the
    observed and expected values as evidence.
  - Reads only; never changes the host. Supports check mode.
  - Runs with the Python standard library only.
options:
  checks:
    description:
      - List of C(id), C(check) (the catalog check mapping) and C(container)
        (applies, persist_only, not_applicable).
    type: list
    elements: dict
    required: true
  discover_tls:
    description: Probe listening TCP ports with a TLS handshake and report those that speak TLS.
    type: bool
    default: true
  discover_platform:
    description:
      - Return C(platform), what discovery finds of the platform on the host (see RETURN). Checks
        with C(paths_from) (for example C(paths_from=discovery.env_files)) run discovery whether
        or not this is set; it runs at most once per call.
    type: bool
    default: false
  discovery_roots:
    description:
      - Directories (absolute globs) the discovery sweep searches for stray files; replaces the
        default C(/opt), C(/srv), C(/var/www), C(/usr/local), C(/home/*), C(/root).
      - playbooks/scan.yml sets it from the inventory variable C(preaudit_discovery_roots).
    type: list
    elements: str
  discovery_extra_paths:
    description:
      - Files and directories (absolute globs) added to what discovery finds; a directory is
        searched like an application's directory, a file is classified by its name (an unknown
        kind lands in C(other_files), still fetched). Inventory variable
        C(preaudit_discovery_extra_paths).
    type: list
    elements: str
    default: []
  discovery_units:
    description:
      - systemd units read as the platform's even when a Debian package owns them (C(app) or
        C(app.service)). Inventory variable C(preaudit_discovery_units).
    type: list
    elements: str
    default: []
  discovery_max_files:
    description: Files the walks (applications' directories and the sweep) may examine in total
      (C(preaudit_discovery_max_files)).
    type: int
    default: 20000
  discovery_max_file_bytes:
    description: A found file larger than this is named under C(sweep.skipped), not listed
      (C(preaudit_discovery_max_file_bytes)).
    type: int
    default: 1048576
  discovery_max_seconds:
    description: Seconds the walks may take in total (C(preaudit_discovery_max_seconds)).
    type: float
    default: 10
  discovery_max_depth:
    description: Directory levels a walk descends below where it starts (C(preaudit_discovery_max_depth)).
    type: int
    default: 8
author: preaudit
"""

EXAMPLES = r"""
- name: Audit the host against the catalog
  host_audit:
    checks: "{{ preaudit_host_checks }}"
"""

RETURN = r"""
controls:
  description:
    - Map of control id to status, observed, expected, message and details.
    - A check with C(paths_from) also returns C(items), one result per discovered file (status,
      observed, expected, message, details, path, source); the control's own status is the
      worst of them (fail, error, pass, not_applicable), not_applicable when discovery found no
      file (the message says where it looked).
  returned: always
  type: dict
host:
  description: Host facts the scanners need (virtualisation, listening TLS ports).
  returned: always
  type: dict
platform:
  description:
    - What discovery found (module_utils/preaudit_discovery.py), schema version 1. Every item
      has C(path) and C(source), where it came from, for example
      C(systemd:app.service EnvironmentFile= /etc/systemd/system/app.service:7),
      C(nginx -T /etc/nginx/sites-enabled/app:12) (C(nginx FILE:LINE) when the files were read
      because nginx -T failed), C(compose:/srv/app/docker-compose.yml env_file),
      C(sweep:/opt) or C(variable:preaudit_discovery_extra_paths). A path found by several
      sources keeps the first. Paths are regular files that existed when discovery ran.
    - C(version) 1.
    - C(services) the systemd services that are not Debian's own, each with C(unit), C(path),
      C(source), C(user), C(group), C(working_directory), C(environment_files) (paths as
      configured), C(exec_paths), C(app_dirs).
    - C(env_files) list of C(path), C(source), C(service) (unit or Compose service), C(user),
      C(group) (the unit's User= and Group=).
    - C(compose_files) list of C(path), C(source), C(project_dir), C(env_files), C(build_contexts).
    - C(dockerfiles), C(requirements) (requirements*.txt, pyproject.toml), C(python_sources),
      C(private_keys), C(certificates), C(other_files) lists of C(path), C(source).
    - C(tls) one item per certificate of an nginx server that speaks TLS, with C(server_names),
      C(listen), C(certificate), C(private_key), C(source).
    - C(nginx) C(method) (C(nginx -T), C(files) when nginx -T failed, null without nginx),
      C(error), C(servers) (C(server_names), C(listen), C(tls), C(certificates), C(private_keys),
      C(roots), C(proxy_pass), C(source)).
    - C(daemon_json) C(path) and C(source) of /etc/docker/daemon.json, or null.
    - C(sweep) C(roots), C(bounds) (C(max_files), C(max_file_bytes), C(max_seconds),
      C(max_depth)), C(truncated), C(hit) (the bounds that stopped a walk), C(incomplete) (where),
      C(examined), C(seconds), C(files) (the stray files, with C(path), C(kind), C(source)),
      C(skipped) (C(path), C(reason)).
    - C(errors) list of messages (for example why nginx -T failed).
  returned: when discover_platform is true
  type: dict
"""

import fnmatch
import glob
import grp
import json
import os
import pwd
import re
import socket
import ssl
import stat
import subprocess
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.preaudit_discovery import ARGUMENT_SPEC as DISCOVERY_ARGUMENT_SPEC
from ansible.module_utils.preaudit_discovery import Options as DiscoveryOptions
from ansible.module_utils.preaudit_discovery import discover, discovered_items, looked_at

PSEUDO_FS = frozenset(
    [
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
        "pstore", "bpf", "mqueue", "hugetlbfs", "fusectl", "configfs", "binfmt_misc", "autofs", "efivarfs",
        "nsfs", "rpc_pipefs", "overlay_proc",
    ]
)  # fmt: skip
SKIP_DIRS = frozenset(["/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/var/lib/containerd", "/snap"])
MODPROBE_DIRS = ("/lib/modprobe.d", "/usr/lib/modprobe.d", "/run/modprobe.d", "/etc/modprobe.d")
SYSCTL_DIRS = ("/usr/lib/sysctl.d", "/lib/sysctl.d", "/run/sysctl.d", "/etc/sysctl.d")


class CheckError(Exception):
    """The check could not be evaluated (missing tool, unreadable file); reported as status error."""


def run(argv, timeout=30):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except OSError as exc:
        raise CheckError("cannot run %s: %s" % (argv[0], exc)) from None
    except subprocess.TimeoutExpired:
        raise CheckError("%s timed out" % argv[0]) from None
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckError("cannot read %s: %s" % (path, exc)) from None


# -- comparisons --------------------------------------------------------------------------


def as_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckError("%r is not a number" % (value,)) from None


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v for v in re.split(r"[,\s]+", str(value)) if v]


def compare(observed, op, expected):
    """True when ``observed`` satisfies ``op`` against ``expected``."""
    if op == "equals":
        return observed is not None and str(observed).lower() == str(expected).lower()
    if op == "not_equals":
        return observed is None or str(observed).lower() != str(expected).lower()
    if op == "in":
        return observed is not None and str(observed).lower() in [str(e).lower() for e in expected]
    if op == "not_in":
        return observed is None or str(observed).lower() not in [str(e).lower() for e in expected]
    if op == "min":
        return observed is not None and as_number(observed) >= as_number(expected)
    if op == "max":
        return observed is not None and as_number(observed) <= as_number(expected)
    if op == "range":
        return observed is not None and as_number(expected[0]) <= as_number(observed) <= as_number(expected[1])
    if op == "subset":
        return observed is not None and set(as_list(observed)) <= set(as_list(expected))
    if op == "includes":
        return observed is not None and set(as_list(expected)) <= set(as_list(observed))
    if op == "excludes":
        return not (set(as_list(observed)) & set(as_list(expected)))
    if op == "regex":
        return observed is not None and re.search(str(expected), str(observed)) is not None
    raise CheckError("unknown op %s" % op)


def result(ok, observed, expected, message="", **details):
    return {
        "status": "pass" if ok else "fail",
        "observed": observed,
        "expected": expected,
        "message": message,
        "details": details,
    }


def not_applicable(observed, expected, message, **details):
    data = result(True, observed, expected, message, **details)
    data["status"] = "not_applicable"
    return data


# -- the host ----------------------------------------------------------------------------


class Host(object):
    """Lazily gathered, cached facts shared by the evaluators (one `sshd -T`, one tree walk, one
    discovery of the platform)."""

    def __init__(self, discovery=None):
        self._cache = {}
        self.discovery = discovery or DiscoveryOptions()

    def platform(self):
        return self.cached("platform", lambda: discover("/", self.discovery))

    def cached(self, key, producer):
        if key not in self._cache:
            self._cache[key] = producer()
        return self._cache[key]

    @property
    def container(self):
        def detect():
            code, out, _err = run(["systemd-detect-virt", "--container"])
            name = out.strip()
            if code == 0 and name and name != "none":
                return name
            if os.path.exists("/.dockerenv"):
                return "docker"
            return None

        return self.cached("container", detect)

    @property
    def net_admin(self):
        """Whether this host may load a packet filter (CAP_NET_ADMIN in its effective set).

        A Docker container has not, by default: its traffic is filtered by the machine running it.
        """

        def detect():
            for line in (read_text("/proc/self/status") or "").splitlines():
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << CAP_NET_ADMIN))
            return True

        return self.cached("net_admin", detect)

    def sshd(self):
        def produce():
            code, out, err = run(["sshd", "-T"])
            if code != 0:
                raise CheckError("sshd -T failed: %s" % (err.strip().splitlines() or ["exit %d" % code])[-1])
            values: dict[str, str] = {}
            for line in out.splitlines():
                key, _sep, value = line.partition(" ")
                if key in values:
                    values[key] += " " + value
                else:
                    values[key] = value
            return values

        return self.cached("sshd", produce)

    def passwd(self):
        return self.cached("passwd", lambda: dict((p.pw_uid, p) for p in pwd.getpwall()))

    def groups(self):
        return self.cached("groups", lambda: dict((g.gr_gid, g) for g in grp.getgrall()))

    def mounts(self):
        def produce():
            mounts = {}
            text = read_text("/proc/self/mountinfo") or ""
            for line in text.splitlines():
                left, _sep, right = line.partition(" - ")
                fields = left.split()
                rfields = right.split()
                if len(fields) < 6 or len(rfields) < 3:
                    continue
                point = fields[4].replace("\\040", " ")
                options = set(fields[5].split(",")) | set(rfields[2].split(","))
                mounts[point] = {"fstype": rfields[0], "options": sorted(options)}
            return mounts

        return self.cached("mounts", produce)

    def walk(self):
        """One walk of the local file systems collecting world-writable, SUID/SGID and unowned files."""

        def produce():
            pseudo = set(p for p, m in self.mounts().items() if m["fstype"] in PSEUDO_FS)
            uids = self.passwd()
            gids = self.groups()
            found: dict[str, list[str]] = {"ww_dirs_no_sticky": [], "ww_files": [], "suid_sgid": [], "unowned": []}
            stack = ["/"]
            while stack:
                directory = stack.pop()
                try:
                    entries = list(os.scandir(directory))
                except OSError:
                    continue
                for entry in entries:
                    path = entry.path
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    mode = st.st_mode
                    if stat.S_ISLNK(mode):
                        continue
                    if st.st_uid not in uids or st.st_gid not in gids:
                        found["unowned"].append(path)
                    if stat.S_ISDIR(mode):
                        if (mode & stat.S_IWOTH) and not (mode & stat.S_ISVTX):
                            found["ww_dirs_no_sticky"].append(path)
                        if path not in SKIP_DIRS and path not in pseudo:
                            stack.append(path)
                    elif stat.S_ISREG(mode):
                        if mode & stat.S_IWOTH:
                            found["ww_files"].append(path)
                        if mode & (stat.S_ISUID | stat.S_ISGID):
                            found["suid_sgid"].append(path)
            for key in found:
                found[key].sort()
            return found

        return self.cached("walk", produce)


# -- evaluators --------------------------------------------------------------------------


def sshd_value(host, key):
    try:
        return host.sshd().get(key)
    except CheckError:
        return None


def check_sshd_config(host, check, _ctx):
    key = check["key"].lower()
    observed = host.sshd().get(key)
    return result(compare(observed, check["op"], check["value"]), observed, {check["op"]: check["value"]})


def check_sshd_host_keys(host, check, _ctx):
    configured = as_list(host.sshd().get("hostkey", ""))
    keys = []
    bad = []
    for path in configured:
        pub = path + ".pub"
        if not os.path.exists(path):
            continue
        code, out, _err = run(["ssh-keygen", "-l", "-f", pub if os.path.exists(pub) else path])
        if code != 0:
            bad.append("%s (unreadable)" % path)
            continue
        fields = out.split()
        bits = int(fields[0])
        kind = fields[-1].strip("()").lower()
        keys.append({"path": path, "type": kind, "bits": bits})
        if kind not in [t.lower() for t in check["allowed_types"]] or (kind == "rsa" and bits < check["min_rsa_bits"]):
            bad.append("%s (%s %d)" % (path, kind, bits))
    observed = ["%s %s %d" % (k["path"], k["type"], k["bits"]) for k in keys]
    expected = "types %s, RSA >= %d bits" % ("/".join(check["allowed_types"]), check["min_rsa_bits"])
    if not keys:
        return result(False, observed, expected, "sshd has no usable host key")
    message = ("weak host keys: " + ", ".join(bad)) if bad else ""
    return result(not bad, observed, expected, message, weak=bad, keys=keys)


def check_sshd_moduli(_host, check, _ctx):
    text = read_text("/etc/ssh/moduli")
    if text is None:
        return result(True, "no /etc/ssh/moduli", ">= %d bits" % check["min_bits"], "built-in groups only")
    sizes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 7 and not line.startswith("#") and fields[4].isdigit():
            sizes.append(int(fields[4]))
    weak = len([s for s in sizes if s < check["min_bits"]])
    observed = {"smallest": min(sizes) if sizes else None, "below_minimum": weak, "total": len(sizes)}
    return result(weak == 0, observed, ">= %d bits" % check["min_bits"])


def sysctl_persisted(key):
    """The value systemd-sysctl would apply at boot: later files win, /etc overrides /usr/lib by name."""
    files = {}
    for directory in SYSCTL_DIRS:
        for path in glob.glob(os.path.join(directory, "*.conf")):
            files[os.path.basename(path)] = path
    ordered = [files[name] for name in sorted(files)]
    if os.path.exists("/etc/sysctl.conf"):
        ordered.append("/etc/sysctl.conf")
    value = None
    source = None
    for path in ordered:
        for line in (read_text(path) or "").splitlines():
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            name, _sep, val = line.partition("=")
            if name.strip().lstrip("-").replace("/", ".") == key:
                value = val.strip()
                source = path
    return value, source


def sysctl_one(host, key, expected):
    """(status, observed, message) of one kernel setting, runtime and persisted."""
    path = "/proc/sys/" + key.replace(".", "/")
    runtime_text = read_text(path)
    runtime = " ".join(runtime_text.split()) if runtime_text is not None else None
    persisted, source = sysctl_persisted(key)
    expected = " ".join(str(expected).split())
    persisted_ok = persisted is not None and " ".join(persisted.split()) == expected
    observed = {"runtime": runtime, "persisted": persisted, "persisted_in": source}
    if runtime is None:
        return "not_applicable", observed, "the kernel has no %s" % key
    if runtime == expected:
        return ("pass", observed, "") if persisted_ok else ("fail", observed, "set at runtime but not persisted")
    if not os.access(path, os.W_OK) and host.container:
        if persisted_ok:
            message = "persisted; the running value belongs to the %s host's kernel (read-only)" % host.container
            return "not_applicable", observed, message
        return "fail", observed, "not persisted (read-only at runtime in this container)"
    return "fail", observed, "runtime value differs"


def service_active(name):
    return systemd_state(name)[1] == "active"


def check_sysctl(host, check, _ctx):
    expected = dict((k, str(v)) for k, v in check["values"].items())
    exempt = check.get("exempt_if_active")
    if exempt and service_active(exempt):
        return not_applicable(None, expected, "exempt while %s is active" % exempt)
    observed = {}
    statuses = {}
    messages = []
    for key, value in sorted(expected.items()):
        status, seen, message = sysctl_one(host, key, value)
        observed[key] = seen
        statuses[key] = status
        if message:
            messages.append("%s: %s" % (key, message))
    failed = sorted(k for k, st in statuses.items() if st == "fail")
    if failed:
        return result(False, observed, expected, "; ".join(m for m in messages if m.split(":")[0] in failed))
    if all(st == "not_applicable" for st in statuses.values()):
        return not_applicable(observed, expected, "; ".join(messages), runtime_applied=False)
    runtime_not_applied = sorted(k for k, st in statuses.items() if st == "not_applicable")
    return result(True, observed, expected, "; ".join(messages), runtime_not_applied=runtime_not_applied)


def _mode_ok(actual, allowed):
    return (actual & 0o7777) & ~allowed == 0


def _judge_file(st, allowed, owner, groups):
    """("MODE owner:group", whether the mode is within ``allowed``, the owner is ``owner`` and the
    group one of ``groups``); an empty ``owner`` or ``groups`` accepts any."""
    actual_owner = _name(pwd.getpwuid, st.st_uid)
    actual_group = _name(grp.getgrgid, st.st_gid)
    ok = (
        _mode_ok(st.st_mode, allowed)
        and (not owner or actual_owner == owner)
        and (not groups or actual_group in groups)
    )
    return "%04o %s:%s" % (st.st_mode & 0o7777, actual_owner, actual_group), ok


def check_file_mode(_host, check, _ctx):
    allowed = int(str(check["mode"]), 8)
    paths = sorted(glob.glob(check["path"]))
    expected = {"mode": "%04o or stricter" % allowed}
    if check.get("owner"):
        expected["owner"] = check["owner"]
    if check.get("group"):
        expected["group"] = check["group"]
    if not paths:
        if check.get("missing_ok"):
            return not_applicable("absent", expected, "%s does not exist" % check["path"])
        return result(False, "absent", expected, "%s does not exist" % check["path"])
    observed = {}
    bad = []
    for path in paths:
        groups = [check["group"]] if check.get("group") else []
        observed[path], ok = _judge_file(os.lstat(path), allowed, check.get("owner"), groups)
        if not ok:
            bad.append(path)
    return result(not bad, observed, expected, ("wrong: " + ", ".join(bad)) if bad else "", wrong=bad)


def _name(lookup, ident):
    try:
        entry = lookup(ident)
        return getattr(entry, "pw_name", None) or entry.gr_name
    except KeyError:
        return str(ident)


def check_file_content(_host, check, _ctx):
    paths = sorted(p for p in glob.glob(check["path"]) if os.path.isfile(p))
    pattern = re.compile(check["pattern"], re.MULTILINE)
    want = bool(check["present"])
    expected = ("%s in %s" if want else "no %s in %s") % (check["pattern"], check["path"])
    if not paths:
        if check.get("missing_ok") or not want:
            return not_applicable("absent", expected, "%s does not exist" % check["path"])
        return result(False, "absent", expected, "%s does not exist" % check["path"])
    matches = {}
    for path in paths:
        found = [m.group(0) for m in pattern.finditer(read_text(path) or "")]
        if found:
            matches[path] = found[:5]
    ok = bool(matches) if want else not matches
    return result(ok, matches or "no match", expected)


def dpkg_status(name):
    code, out, _err = run(["dpkg-query", "-W", "-f=${Status} ${Version}", name])
    if code != 0:
        return None
    parts = out.split()
    if len(parts) >= 3 and parts[2] == "installed":
        return parts[3] if len(parts) > 3 else "installed"
    return None


def check_package(_host, check, _ctx):
    version = dpkg_status(check["name"])
    installed = version is not None
    observed = ("installed %s" % version) if installed else "not installed"
    return result(installed == (check["state"] == "present"), observed, check["state"])


def systemd_state(unit):
    _code, enabled, _err = run(["systemctl", "is-enabled", unit])
    _code, active, _err = run(["systemctl", "is-active", unit])
    return enabled.strip() or "not-found", active.strip() or "unknown"


def check_service(host, check, ctx):
    outcomes = [service_outcome(host, name, check["state"], ctx) for name in check["names"]]
    observed = dict((name, o["observed"]) for name, o in zip(check["names"], outcomes, strict=True))
    failed = [name for name, o in zip(check["names"], outcomes, strict=True) if o["status"] == "fail"]
    if failed:
        return result(False, observed, check["state"], "not %s: %s" % (check["state"], ", ".join(failed)))
    if all(o["status"] == "not_applicable" for o in outcomes):
        return not_applicable(observed, check["state"], "; ".join(o["message"] for o in outcomes))
    return result(True, observed, check["state"])


def service_outcome(host, name, state, ctx):
    enabled, active = systemd_state(name)
    observed = {"enabled": enabled, "active": active}
    if state == "running":
        ok = enabled in ("enabled", "static", "alias") and active == "active"
        if not ok and ctx["container_behaviour"] == "persist_only" and host.container and enabled == "enabled":
            return not_applicable(
                observed, state, "enabled; it cannot run inside a %s container" % host.container, runtime_applied=False
            )
    elif state == "enabled":
        ok = enabled in ("enabled", "static", "alias")
    elif state == "stopped":
        ok = enabled not in ("enabled",) and active != "active"
    elif state == "masked_or_absent":
        ok = enabled in ("masked", "not-found", "")
    else:
        raise CheckError("unknown service state %s" % state)
    return result(ok, observed, state)


def modprobe_directives():
    install = {}
    blacklist = set()
    for directory in MODPROBE_DIRS:
        for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
            for line in (read_text(path) or "").splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[0] == "install":
                    install[fields[1].replace("-", "_")] = " ".join(fields[2:])
                elif len(fields) >= 2 and fields[0] == "blacklist":
                    blacklist.add(fields[1].replace("-", "_"))
    return install, blacklist


def check_kernel_module(host, check, ctx):
    name = check["name"].replace("-", "_")
    install, blacklist = host.cached("modprobe", modprobe_directives)
    loaded_text = read_text("/proc/modules") or ""
    loaded = any(line.split()[0] == name for line in loaded_text.splitlines() if line.split())
    disabled = install.get(name, "").split()[:1] in (
        ["/bin/false"],
        ["/bin/true"],
        ["/usr/bin/false"],
        ["/usr/bin/true"],
    )
    observed = {"install": install.get(name), "blacklisted": name in blacklist, "loaded": loaded}
    expected = "install %s /bin/false and blacklisted, not loaded" % name
    if disabled and name in blacklist and loaded and host.container:
        return not_applicable(observed, expected, "disabled; loaded by the %s host's kernel" % host.container)
    return result(disabled and name in blacklist and not loaded, observed, expected)


def check_mount_option(host, check, _ctx):
    mount = host.mounts().get(check["mount"])
    expected = sorted(check["options"])
    if mount is None:
        return result(False, "not a separate mount", {"options": expected}, "%s is not a mount point" % check["mount"])
    missing = [o for o in expected if o not in mount["options"]]
    return result(
        not missing, mount["options"], {"options": expected}, ("missing: " + ", ".join(missing)) if missing else ""
    )


def login_defs():
    values: dict[str, str] = {}
    for line in (read_text("/etc/login.defs") or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            values[fields[0].upper()] = fields[1]
    return values


def check_login_defs(host, check, _ctx):
    observed = host.cached("login_defs", login_defs).get(check["key"].upper())
    return result(compare(observed, check["op"], check["value"]), observed, {check["op"]: check["value"]})


def _shadow():
    entries = {}
    for line in (read_text("/etc/shadow") or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 9:
            entries[fields[0]] = fields
    return entries


def check_accounts(host, check, _ctx):
    rule = check["rule"]
    if rule == "uid0_only_root":
        uid0 = sorted(p.pw_name for p in pwd.getpwall() if p.pw_uid == 0)
        return result(uid0 == ["root"], uid0, ["root"])
    if rule == "no_empty_passwords":
        empty = sorted(name for name, fields in host.cached("shadow", _shadow).items() if fields[1] == "")
        return result(not empty, empty or "none", "no account with an empty password field", "", users=empty)
    if rule == "shadowed_passwords":
        bad = sorted(p.pw_name for p in pwd.getpwall() if p.pw_passwd not in ("x", "*", "!"))
        return result(not bad, bad or "none", "every password in /etc/shadow")
    if rule == "password_max_days":
        limit = int(check.get("value", 365))
        exempt = set(check.get("exempt", []))
        overdue = {}
        for name, fields in host.cached("shadow", _shadow).items():
            usable = fields[1] and fields[1][0] not in "!*"
            if usable and name not in exempt and (not fields[4] or int(fields[4]) > limit):
                overdue[name] = fields[4] or "never"
        observed = ["%s (%s)" % (n, d) for n, d in sorted(overdue.items())] or "none"
        expected = "accounts with a usable password expire within %d days" % limit
        return result(not overdue, observed, expected, "", users=sorted(overdue))
    if rule == "group_members":
        spec = check.get("value") or {}
        try:
            group = grp.getgrnam(spec["group"])
        except KeyError:
            return not_applicable("no group %s" % spec["group"], spec, "group %s does not exist" % spec["group"])
        members = set(group.gr_mem) | set(p.pw_name for p in pwd.getpwall() if p.pw_gid == group.gr_gid)
        extra = sorted(members - set(spec.get("allowed", [])))
        return result(not extra, sorted(members), {"allowed": spec.get("allowed", [])}, "", unapproved=extra)
    if rule == "root_path":
        code, out, _err = run(["su", "-", "root", "-s", "/bin/sh", "-c", "echo $PATH"])
        if code != 0:
            raise CheckError("cannot read root's login PATH")
        path = out.strip()
        bad = []
        for part in path.split(":"):
            if part in ("", ".") or not part.startswith("/"):
                bad.append(part or "(empty)")
            elif os.path.isdir(part):
                st = os.stat(part)
                if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    bad.append(part)
        return result(not bad, path, "absolute, root-owned, not group/world-writable directories", "", bad=bad)
    raise CheckError("unknown accounts rule %s" % rule)


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def check_world_writable(host, check, _ctx):
    walk = host.walk()
    roots = check["paths"]
    key = "ww_dirs_no_sticky" if check["rule"] == "sticky_dirs" else "ww_files"
    found = [p for p in walk[key] if under(p, roots)]
    expected = "none" if key == "ww_files" else "every world-writable directory has the sticky bit"
    return result(not found, found[:50] or "none", expected, "", count=len(found), paths=found)


def check_suid_sgid(host, check, _ctx):
    allow = check["allowlist"]
    found = [p for p in host.walk()["suid_sgid"] if not any(fnmatch.fnmatchcase(p, a) for a in allow)]
    found = [p for p in found if under(p, check["paths"])]
    return result(
        not found, found[:50] or "none", "only allowlisted SUID/SGID binaries", "", count=len(found), paths=found
    )


def check_unowned_files(host, check, _ctx):
    found = [p for p in host.walk()["unowned"] if under(p, check["paths"])]
    message = "every file has an existing owner and group"
    return result(not found, found[:50] or "none", message, "", count=len(found), paths=found)


def audit_rules_text():
    texts = []
    for path in sorted(glob.glob("/etc/audit/rules.d/*.rules")):
        texts.append(read_text(path) or "")
    return "\n".join(texts)


def check_auditd_rule(host, check, _ctx):
    persisted = host.cached("audit_rules", audit_rules_text)
    keys_persisted = set(re.findall(r"(?:-k\s+|key=)(\S+)", persisted))
    missing = [k for k in check["keys"] if k not in keys_persisted]
    observed = {"persisted_keys": sorted(keys_persisted & set(check["keys"]))}
    _enabled, active = systemd_state("auditd")
    if active == "active":
        code, out, _err = run(["auditctl", "-l"])
        loaded = set(re.findall(r"(?:-k\s+|key=)(\S+)", out)) if code == 0 else set()
        observed["loaded_keys"] = sorted(loaded & set(check["keys"]))
        missing += [k for k in check["keys"] if k not in loaded and k not in missing]
    elif host.container and not missing:
        return not_applicable(
            observed, check["keys"], "rules persisted; auditd cannot run in a %s container" % host.container
        )
    return result(not missing, observed, {"keys": check["keys"]}, ("missing: " + ", ".join(missing)) if missing else "")


CAP_NET_ADMIN = 12
NO_PACKET_FILTER = "the %s container has no CAP_NET_ADMIN: its traffic is filtered by the machine running it"


def nft_ruleset():
    code, out, err = run(["nft", "-j", "list", "ruleset"])
    if code != 0:
        raise CheckError("nft list ruleset failed: %s" % err.strip())
    return json.loads(out).get("nftables", [])


def accepted_tcp_ports(expressions):
    """TCP destination ports that a rule (nft JSON expression list) accepts."""
    if not any("accept" in e for e in expressions):
        return set()
    ports = set()
    for expr in expressions:
        match = expr.get("match") or {}
        left = match.get("left") or {}
        payload = left.get("payload") or {}
        if payload.get("protocol") != "tcp" or payload.get("field") != "dport" or match.get("op") not in ("==", "in"):
            continue
        right = match.get("right")
        values = right.get("set", []) if isinstance(right, dict) else [right]
        ports |= set(v for v in values if isinstance(v, int))
    return ports


def check_nftables(host, check, _ctx):
    if not host.net_admin:
        return not_applicable(None, check["rule"], NO_PACKET_FILTER % (host.container or "this"))
    if not any(os.path.exists(p) for p in ("/usr/sbin/nft", "/sbin/nft")):
        return result(False, "nftables not installed", check["rule"])
    items = host.cached("nft", nft_ruleset)
    chains = [i["chain"] for i in items if "chain" in i]
    input_chains = [c for c in chains if c.get("hook") == "input" and c.get("type") == "filter"]
    if check["rule"] == "input_policy_drop":
        families = set(c.get("family") for c in input_chains if c.get("policy") == "drop")
        ok = "inet" in families or {"ip", "ip6"} <= families
        observed = ["%s %s policy %s" % (c.get("family"), c.get("name"), c.get("policy")) for c in input_chains]
        return result(ok, observed or "no input chain", "input chain with policy drop for IPv4 and IPv6")
    if check["rule"] == "allowed_ports":
        names = set((c.get("family"), c.get("table"), c.get("name")) for c in input_chains)
        accepted = set()
        for item in items:
            rule = item.get("rule")
            if not rule or (rule.get("family"), rule.get("table"), rule.get("chain")) not in names:
                continue
            accepted |= accepted_tcp_ports(rule.get("expr", []))
        wanted = [int(p) for p in check.get("ports", [])]
        missing = [p for p in wanted if p not in accepted]
        return result(
            not missing,
            {"accepted_tcp_ports": sorted(accepted)},
            {"ports": wanted},
            ("not accepted: %s" % missing) if missing else "",
        )
    raise CheckError("unknown nftables rule %s" % check["rule"])


def _walk_files(root, max_depth):
    """Regular files under ``root`` (no symbolic links followed), at most ``max_depth`` levels deep."""
    base = root.rstrip("/").count("/")
    for directory, dirs, files in os.walk(root, followlinks=False):
        if directory in SKIP_DIRS or directory.count("/") - base >= max_depth:
            dirs[:] = []
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in SKIP_DIRS]
        for name in files:
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield path, st


def _holds(path, marker):
    try:
        with open(path, "rb") as handle:
            return marker.encode("utf-8") in handle.read(65536)
    except OSError:
        return False


def _searched_files(check):
    """(path, stat) of the files matching ``patterns`` under ``paths``, not excluded."""
    seen = set()
    for root in check["paths"]:
        if not os.path.isdir(root):
            continue
        for path, st in _walk_files(root, int(check.get("max_depth", 8))):
            if path in seen or not any(fnmatch.fnmatchcase(path, p) for p in check["patterns"]):
                continue
            seen.add(path)
            if not any(fnmatch.fnmatchcase(path, p) for p in check.get("exclude") or []):
                yield path, st


def _discovered_files(host, check):
    """(path, stat) of the files discovery names for ``paths_from`` (they exist; links are not
    judged, as in the search)."""
    if not check.get("paths_from"):
        return
    for item in discovered_items(host.platform(), check["paths_from"]):
        try:
            st = os.lstat(item["path"])
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield item["path"], st


def check_secret_files(host, check, _ctx):
    """Files matching ``patterns`` (full-path globs) under ``paths``, plus those discovery names
    for ``paths_from``: mode, owner and group; never their content."""
    allowed = int(str(check["mode"]), 8)
    groups = as_list(check.get("group")) if check.get("group") else []
    expected = {"mode": "%04o or stricter" % allowed}
    if check.get("owner"):
        expected["owner"] = check["owner"]
    if groups:
        expected["group"] = " or ".join(groups)
    observed = {}
    wrong = []
    for path, st in list(_searched_files(check)) + list(_discovered_files(host, check)):
        if path in observed or (check.get("contains") and not _holds(path, check["contains"])):
            continue
        observed[path], ok = _judge_file(st, allowed, check.get("owner"), groups)
        if not ok:
            wrong.append(path)
    if not observed:
        return not_applicable("none found", expected, "no matching file", files=[], wrong=[])
    shown = dict((k, observed[k]) for k in sorted(observed)[:50])
    message = ("wrong: " + ", ".join(sorted(wrong)[:20])) if wrong else ""
    return result(not wrong, shown, expected, message, files=sorted(observed), wrong=sorted(wrong))


def parse_env(text):
    """KEY=VALUE lines of an environment file (systemd EnvironmentFile, docker compose .env)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _sep, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def secret_weakness(value, spec, denylist):
    """Why ``value`` is not a strong secret (None when it is); the value itself is never part of the answer."""
    if spec.get("kind") == "url":
        try:
            value = urlsplit(value).password
        except ValueError:
            return "not a URL"
        if value is None:
            return None  # no password in the URL (for example peer or certificate authentication)
    if not value:
        return "empty"
    lowered = value.lower()
    if lowered in denylist:
        return "a known default value"
    if len(set(value)) == 1:
        return "one repeated character"
    length = len(value.encode("utf-8"))
    if length < int(spec["min_length"]):
        return "%d bytes, fewer than %d" % (length, int(spec["min_length"]))
    return None


def check_env_secret_strength(host, check, _ctx):
    """Named secrets of an environment file (``path``), or of every environment file discovery
    found (``paths_from``): missing, empty, default or short. Reports names and reasons only."""
    if check.get("paths_from"):
        return per_discovered_file(host, check, env_secret_strength, "environment file")
    return env_secret_strength(check["path"], check)


def env_secret_strength(path, check):
    keys = [k if isinstance(k, dict) else {"name": k} for k in check["keys"]]
    for spec in keys:
        spec.setdefault("min_length", check.get("min_length", 32))
    expected = dict((k["name"], ">= %s bytes, not a default value" % k["min_length"]) for k in keys)
    text = read_text(path)
    if text is None:
        return not_applicable("absent", expected, "%s does not exist" % path, weak=[], missing=[])
    values = parse_env(text)
    denylist = set(str(d).lower() for d in check.get("denylist") or [])
    observed = {}
    weak = []
    missing = []
    for spec in keys:
        name = spec["name"]
        if name not in values:
            observed[name] = "missing"
            missing.append(name)
            continue
        reason = secret_weakness(values[name], spec, denylist)
        observed[name] = ("weak: %s" % reason) if reason else "ok"
        if reason:
            weak.append(name)
    if check.get("missing_ok") and len(missing) == len(keys):
        names = ", ".join(k["name"] for k in keys)
        return not_applicable(observed, expected, "%s holds none of %s" % (path, names), weak=[], missing=missing)
    bad = weak + ([] if check.get("missing_ok") else missing)
    message = ("weak or missing: " + ", ".join(bad)) if bad else ""
    return result(not bad, observed, expected, message, weak=weak, missing=missing)


# Worst first: the control's status over its discovered files.
ITEM_STATUS_ORDER = ("fail", "error", "pass", "not_applicable")


def per_discovered_file(host, check, judge, what):
    """``judge(path, check)`` for each file discovery names for ``paths_from``: the control's
    result is the worst of them, with one result per file under ``items`` (path and source kept,
    so each file is a finding of its own); not_applicable, saying where discovery looked, when
    it found none."""
    platform = host.platform()
    items = discovered_items(platform, check["paths_from"])
    if not items:
        message = "discovery found no %s (looked at %s)" % (what, looked_at(platform))
        return not_applicable("none found", {"paths_from": check["paths_from"]}, message, files=[])
    outcomes = []
    for item in items:
        try:
            outcome = judge(item["path"], check)
        except CheckError as exc:
            outcome = error(str(exc))
        outcome.update(path=item["path"], source=item["source"])
        outcome["details"] = dict(outcome.get("details") or {}, source=item["source"])
        outcomes.append(outcome)
    status = min((o["status"] for o in outcomes), key=ITEM_STATUS_ORDER.index)
    messages = ["%s: %s" % (o["path"], o["message"]) for o in outcomes if o["status"] == status and o["message"]]
    return {
        "status": status,
        "observed": dict((o["path"], o["observed"]) for o in outcomes),
        "expected": outcomes[0]["expected"],
        "message": "; ".join(messages),
        "details": {
            "files": [o["path"] for o in outcomes],
            "sources": dict((o["path"], o["source"]) for o in outcomes),
        },
        "items": outcomes,
    }


EVALUATORS = {
    "sshd_config": check_sshd_config,
    "sshd_host_keys": check_sshd_host_keys,
    "sshd_moduli": check_sshd_moduli,
    "sysctl": check_sysctl,
    "file_mode": check_file_mode,
    "file_content": check_file_content,
    "package": check_package,
    "service": check_service,
    "kernel_module": check_kernel_module,
    "mount_option": check_mount_option,
    "login_defs": check_login_defs,
    "accounts": check_accounts,
    "world_writable": check_world_writable,
    "suid_sgid": check_suid_sgid,
    "unowned_files": check_unowned_files,
    "auditd_rule": check_auditd_rule,
    "nftables": check_nftables,
    "secret_files": check_secret_files,
    "env_secret_strength": check_env_secret_strength,
}


def error(message):
    return {"status": "error", "observed": None, "expected": None, "message": message, "details": {}}


def evaluate(host, item):
    check = item["check"]
    behaviour = item.get("container", "applies")
    if behaviour == "not_applicable" and host.container:
        return not_applicable(None, None, "does not apply inside a %s container" % host.container)
    needs = check.get("applies_if_any")
    if needs and not any(os.path.exists(path) for path in needs):
        # What the check audits is not installed here (a host without Docker has no dockerd to watch).
        return not_applicable(None, None, "none of %s exists on this host" % ", ".join(needs))
    evaluator = EVALUATORS.get(check.get("type"))
    if evaluator is None:
        return {
            "status": "error",
            "observed": None,
            "expected": None,
            "message": "unknown check type %s" % check.get("type"),
            "details": {},
        }
    try:
        return evaluator(host, check, {"container_behaviour": behaviour})
    except CheckError as exc:
        return error(str(exc))
    except Exception as exc:  # a bug in one evaluator must not hide the other results
        return {
            "status": "error",
            "observed": None,
            "expected": None,
            "message": "%s: %s" % (type(exc).__name__, exc),
            "details": {},
        }


def listening_tcp_ports():
    ports = set()
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in (read_text(path) or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                address, _sep, port = fields[1].partition(":")
                if len(address) == width:
                    ports.add(int(port, 16))
    return sorted(ports)


def speaks_tls(port, timeout=1.0):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with context.wrap_socket(raw):
                return True
    except ssl.SSLError as exc:
        # A TLS alert (e.g. protocol version refused) still proves the port speaks TLS; bytes
        # that are not TLS at all (an HTTP error page, an SSH banner) show as a wrong version.
        return "ALERT" in str(getattr(exc, "reason", "") or exc).upper()
    except (OSError, ValueError):
        return False


def main():
    spec = dict(
        checks=dict(type="list", elements="dict", required=True),
        discover_tls=dict(type="bool", default=True),
        discover_platform=dict(type="bool", default=False),
    )
    spec.update(DISCOVERY_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    started = time.time()
    host = Host(DiscoveryOptions.from_params(module.params))
    results = {}
    for item in module.params["checks"]:
        results[item["id"]] = evaluate(host, item)
    facts = {
        "container": host.container,
        "net_admin": host.net_admin,
        "hostname": socket.gethostname(),
        "listening_tcp": listening_tcp_ports(),
        "efi": os.path.isdir("/sys/firmware/efi"),
        "mounted_fstypes": sorted(set(m["fstype"] for m in host.mounts().values())),
        "mounts": dict((p, m["options"]) for p, m in host.mounts().items() if p in ("/tmp", "/dev/shm")),
        "docker": any(os.path.exists(p) for p in ("/usr/bin/dockerd", "/usr/sbin/dockerd")),
        "sshd_ports": sorted(int(p) for p in as_list(sshd_value(host, "port"))),
    }
    if module.params["discover_tls"]:
        facts["tls_ports"] = [p for p in facts["listening_tcp"] if p not in (22,) and speaks_tls(p)]
    extra = {"platform": host.platform()} if module.params["discover_platform"] else {}
    facts["duration"] = round(time.time() - started, 3)
    module.exit_json(changed=False, controls=results, host=facts, **extra)


if __name__ == "__main__":
    main()
