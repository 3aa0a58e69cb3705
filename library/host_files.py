#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Collect the files preaudit's file scanners read (the ones discovery names and explicit globs)
into one archive, returned in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_files
short_description: Return the files matching glob patterns as one gzip tar archive
description:
  - Finds the regular files that discovery names (with C(discover); see the C(platform) return
    value of the host_audit module for what it finds and how) and those matching absolute glob
    patterns (C(*), C(?), C([...]) within one path component, C(**) across directories; hidden
    files match too) and returns them as one base64-encoded gzip tar archive, so that a
    controller can scan copies of a host's configuration and secret-bearing files with one
    module call per host.
  - Never follows symbolic links, never opens FIFOs or devices, and skips version-control
    directories, C(__pycache__) and virtual environments. Files over C(max_file_bytes), or
    beyond C(max_total_bytes) or C(max_files), are listed under C(not_collected) with the reason
    instead of being read.
  - Reads only; never changes the host. Supports check mode.
  - Runs with the Python standard library only.
  - The result holds file contents (secrets included), so do not register it in a play whose
    output is logged, and remove the controller-side copy after use.
options:
  paths:
    description: Absolute glob patterns, fetched besides what discovery names.
    type: list
    elements: str
    default: []
  discover:
    description:
      - Also fetch every file discovery names (environment files, Compose files, Dockerfiles,
        requirement files, Python sources of the discovered applications, private keys and
        certificates nginx names, /etc/docker/daemon.json, stray files of the sweep).
    type: bool
    default: false
  platform:
    description:
      - A discovery result the host_audit module returned in the same play (its C(platform)), used
        instead of discovering again. Without it, C(discover) runs discovery here, with the
        C(discovery_*) options (the same as host_audit's).
    type: dict
  discovery_roots:
    description: As for host_audit (the sweep's roots; inventory variable C(preaudit_discovery_roots)).
    type: list
    elements: str
  discovery_extra_paths:
    description: As for host_audit (C(preaudit_discovery_extra_paths)).
    type: list
    elements: str
    default: []
  discovery_units:
    description: As for host_audit (C(preaudit_discovery_units)).
    type: list
    elements: str
    default: []
  discovery_max_files:
    description: As for host_audit (C(preaudit_discovery_max_files)).
    type: int
    default: 20000
  discovery_max_file_bytes:
    description: As for host_audit (C(preaudit_discovery_max_file_bytes)).
    type: int
    default: 1048576
  discovery_max_seconds:
    description: As for host_audit (C(preaudit_discovery_max_seconds)).
    type: float
    default: 10
  discovery_max_depth:
    description: As for host_audit (C(preaudit_discovery_max_depth)).
    type: int
    default: 8
  max_file_bytes:
    description: Largest file read, in bytes.
    type: int
    default: 10485760
  max_total_bytes:
    description: Most bytes read in total.
    type: int
    default: 33554432
  max_files:
    description: Most files read.
    type: int
    default: 5000
author: preaudit
"""

EXAMPLES = r"""
- name: Collect what discovery finds, plus one more tree
  host_files:
    discover: true
    paths: ["/srv/legacy-app/**"]
"""

RETURN = r"""
archive:
  description: Base64 of a gzip tar archive of the files, member names without the leading slash.
  returned: always
  type: str
files:
  description:
    - Path, size, mode (octal string), owner uid and gid, SHA-256 of each archived file, and
      C(source), where discovery found it (absent for a file only a pattern matched).
  returned: always
  type: list
not_collected:
  description:
    - Path and reason of each matching entry that was not read; C(quiet) marks symbolic links
      (their targets are collected when a pattern matches them).
    - Not named C(skipped), which Ansible would take for a skipped task.
  returned: always
  type: list
unmatched:
  description: Patterns that matched no file.
  returned: always
  type: list
platform:
  description: The discovery result the files came from (schema in host_audit's RETURN).
  returned: when discover is true
  type: dict
"""

import base64
import errno
import hashlib
import io
import os
import re
import stat
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.preaudit_discovery import ARGUMENT_SPEC as DISCOVERY_ARGUMENT_SPEC
from ansible.module_utils.preaudit_discovery import Options as DiscoveryOptions
from ansible.module_utils.preaudit_discovery import discover, files_to_fetch

SKIP_DIR_NAMES = frozenset([".git", ".hg", ".svn", "__pycache__", "node_modules", ".tox", ".mypy_cache"])
WILDCARD = re.compile(r"[*?\[]")


def pattern_regex(pattern):
    """A regex for an absolute glob: `**/` any directories (or none), `*` and `?` within a component."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def static_prefix(pattern):
    """The directory to walk: the components before the first wildcard."""
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if WILDCARD.search(part):
            break
        fixed.append(part)
    else:
        if not WILDCARD.search(parts[-1]):
            return "/".join(parts)
    return "/".join(fixed) or "/"


def candidates(pattern):
    """Paths of non-directory entries matching ``pattern`` (symbolic links included, not followed)."""
    start = static_prefix(pattern)
    try:
        st = os.lstat(start)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        if start == pattern:
            yield start
        return
    regex = pattern_regex(pattern)
    for directory, subdirs, names in os.walk(start):
        kept = []
        for name in sorted(subdirs):
            path = os.path.join(directory, name)
            if name in SKIP_DIR_NAMES or os.path.exists(os.path.join(path, "pyvenv.cfg")):
                continue
            if os.path.islink(path):
                # os.walk lists a link to a directory among the directories; report it as a link.
                if regex.match(path):
                    yield path
                continue
            kept.append(name)
        subdirs[:] = kept
        for name in sorted(names):
            path = os.path.join(directory, name)
            if regex.match(path):
                yield path


def read_file(path, limit):
    """(bytes, stat) of a regular file, or (None, reason)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link; not followed"
        return None, "cannot open: %s" % os.strerror(exc.errno or 0)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > limit:
            return None, "%d bytes, over the %d-byte limit" % (st.st_size, limit)
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:
            return None, "grew over the %d-byte limit while being read" % limit
        return b"".join(chunks), st
    except OSError as exc:
        return None, "cannot read: %s" % os.strerror(exc.errno or 0)
    finally:
        os.close(fd)


class Collection(object):
    """The archive being written, what went in and what did not, within the limits."""

    def __init__(self, archive, max_file_bytes, max_total_bytes, max_files):
        self.archive = archive
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self.files: list[dict[str, object]] = []
        self.not_collected: list[dict[str, object]] = []
        self.seen = set()
        self.total = 0

    def add(self, path, source=None):
        if path in self.seen:
            return
        self.seen.add(path)
        try:
            lst = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(lst.st_mode):
            # A link's target is collected itself when a pattern matches it.
            self.not_collected.append({"path": path, "reason": "symbolic link; not followed", "quiet": True})
            return
        if len(self.files) >= self.max_files:
            self.not_collected.append({"path": path, "reason": "over the limit of %d files" % self.max_files})
            return
        data, info = read_file(path, min(self.max_file_bytes, max(0, self.max_total_bytes - self.total)))
        if data is None:
            if self.total + lst.st_size > self.max_total_bytes and lst.st_size <= self.max_file_bytes:
                info = "over the total limit of %d bytes" % self.max_total_bytes
            self.not_collected.append({"path": path, "reason": info})
            return
        self.total += len(data)
        member = tarfile.TarInfo(path.lstrip("/"))
        member.size = len(data)
        member.mode = stat.S_IMODE(info.st_mode)
        member.mtime = int(info.st_mtime)
        self.archive.addfile(member, io.BytesIO(data))
        entry = {
            "path": path,
            "size": len(data),
            "mode": "%04o" % stat.S_IMODE(info.st_mode),
            "uid": info.st_uid,
            "gid": info.st_gid,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if source:
            entry["source"] = source
        self.files.append(entry)


def collect(patterns, max_file_bytes, max_total_bytes, max_files, named=()):
    """The archive of the ``named`` (path, source) files, then of the files ``patterns`` match."""
    buffer = io.BytesIO()
    unmatched: list[str] = []
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        collection = Collection(archive, max_file_bytes, max_total_bytes, max_files)
        for path, source in named:
            collection.add(path, source)
        for pattern in patterns:
            matched = False
            for path in candidates(pattern):
                matched = True
                collection.add(path)
            if not matched:
                unmatched.append(pattern)
    return buffer.getvalue(), collection.files, collection.not_collected, unmatched


def main():
    spec = dict(
        paths=dict(type="list", elements="str", default=[]),
        discover=dict(type="bool", default=False),
        platform=dict(type="dict"),
        max_file_bytes=dict(type="int", default=10 * 1024 * 1024),
        max_total_bytes=dict(type="int", default=32 * 1024 * 1024),
        max_files=dict(type="int", default=5000),
    )
    spec.update(DISCOVERY_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    patterns = module.params["paths"]
    relative = [p for p in patterns if not p.startswith("/")]
    if relative:
        module.fail_json(msg="patterns must be absolute: %s" % ", ".join(relative))
    started = time.time()
    platform = None
    if module.params["discover"]:
        platform = module.params["platform"] or discover("/", DiscoveryOptions.from_params(module.params))
    data, files, not_collected, unmatched = collect(
        patterns,
        module.params["max_file_bytes"],
        module.params["max_total_bytes"],
        module.params["max_files"],
        named=files_to_fetch(platform) if platform else (),
    )
    extra = {"platform": platform} if platform is not None else {}
    module.exit_json(
        changed=False,
        archive=base64.b64encode(data).decode("ascii"),
        files=files,
        not_collected=not_collected,
        unmatched=unmatched,
        duration=round(time.time() - started, 3),
        **extra,
    )


if __name__ == "__main__":
    main()
