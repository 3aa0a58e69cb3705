#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Generate or rotate secrets in environment files on the host; only key names ever leave it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: env_secrets
short_description: Write new random secrets into environment files, keeping a root-only backup
description:
  - For each file, gives the named keys new random values (C(secrets.token_urlsafe)) made on the
    host, replacing their lines in place (or adding them) and keeping every other line as it is.
  - Before a file changes, its previous content is copied to C(backup_dir) (directory 0700, copy
    0600, owned by root), so a rotation can be rolled back.
  - The file keeps its owner, group and mode. Values are never returned, logged or put in a
    diff; the result names keys only. Supports check mode.
options:
  files:
    description:
      - List of C(path) and C(generate), a list of C(name) and C(bytes) (random bytes before
        encoding; the value is about 4/3 as many characters).
    type: list
    elements: dict
    required: true
  backup_dir:
    description: Where the previous versions of changed files are kept.
    type: path
    default: /var/backups/preaudit/secrets
author: preaudit
"""

EXAMPLES = r"""
- name: Replace the weak JWT secret
  env_secrets:
    files:
      - {path: /srv/app/.env, generate: [{name: JWT_SECRET, bytes: 48}]}
  no_log: true
"""

RETURN = r"""
files:
  description: Per changed (or, in check mode, to be changed) file, the key names given new values and the backup.
  returned: always
  type: list
"""

import os
import re
import secrets
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def backup_name(path: str, when: float) -> str:
    return "%s.%s" % (path.strip("/").replace("/", "_"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)))


def replace_keys(text: str, values: dict[str, str]) -> str:
    """``text`` with each key's assignment set to its new value (appended when absent)."""
    lines = text.splitlines()
    done = set()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match.group(2) in values:
            lines[index] = "%s%s=%s" % (match.group(1), match.group(2), values[match.group(2)])
            done.add(match.group(2))
    for name in values:
        if name not in done:
            lines.append("%s=%s" % (name, values[name]))
    return "\n".join(lines) + "\n"


def keep_backup(path: str, data: bytes, backup_dir: str, when: float) -> str:
    if not os.path.isdir(backup_dir):
        os.makedirs(backup_dir, 0o700)
    if os.geteuid() == 0:
        os.chown(backup_dir, 0, 0)
    os.chmod(backup_dir, 0o700)
    target = os.path.join(backup_dir, backup_name(path, when))
    suffix = 0
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(backup_dir, "%s.%d" % (backup_name(path, when), suffix))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if os.geteuid() == 0:
        os.chown(target, 0, 0)
    return target


def write_like(path: str, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, keeping its owner, group and mode."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", required=True),
            backup_dir=dict(type="path", default="/var/backups/preaudit/secrets"),
        ),
        supports_check_mode=True,
    )
    when = time.time()
    report: list[dict[str, Any]] = []
    for spec in module.params["files"]:
        path = spec.get("path")
        wanted = [g for g in spec.get("generate") or [] if g.get("name")]
        if not path or not wanted:
            continue
        names = [g["name"] for g in wanted]
        bad = [n for n in names if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", n)]
        if bad:
            module.fail_json(msg="%s: not environment variable names: %s" % (path, ", ".join(bad)), files=report)
        try:
            with open(path, "rb") as handle:
                before = handle.read()
        except OSError as exc:
            module.fail_json(msg="%s: %s" % (path, exc.strerror), files=report)
        entry: dict[str, Any] = {"path": path, "generated": names, "backup": None}
        if not module.check_mode:
            values = dict((g["name"], secrets.token_urlsafe(int(g.get("bytes") or 48))) for g in wanted)
            after = replace_keys(before.decode("utf-8"), values).encode("utf-8")
            try:
                entry["backup"] = keep_backup(path, before, module.params["backup_dir"], when)
                write_like(path, after)
            except OSError as exc:
                module.fail_json(msg="%s: %s" % (path, exc.strerror or exc), files=report)
        report.append(entry)
    module.exit_json(changed=bool(report), files=report)


if __name__ == "__main__":
    main()
