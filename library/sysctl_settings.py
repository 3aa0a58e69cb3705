#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Persist kernel settings in one owned sysctl.d file and apply what the host allows at runtime."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: sysctl_settings
short_description: Persist and apply kernel settings, tolerating read-only /proc/sys
description:
  - Writes all settings to one owned file (for example /etc/sysctl.d/60-preaudit.conf) and sets
    each runtime value that differs.
  - Where the runtime value cannot be changed (a read-only /proc/sys in a container, or a key the
    kernel does not have) the setting stays persisted and is reported in C(not_applied) with the
    reason, instead of failing the run.
  - Supports check mode and diff mode; idempotent.
options:
  path:
    description: The sysctl.d file this module owns.
    type: path
    required: true
  settings:
    description: Map of sysctl key (dotted) to value.
    type: dict
    required: true
  header:
    description: Comment written at the top of the file.
    type: str
    default: Managed by preaudit (os_hardening). Local changes are overwritten.
author: preaudit
"""

EXAMPLES = r"""
- name: Persist and apply kernel settings
  sysctl_settings:
    path: /etc/sysctl.d/60-preaudit.conf
    settings:
      kernel.randomize_va_space: 2
"""

RETURN = r"""
applied:
  description: Keys whose runtime value was changed.
  returned: always
  type: list
not_applied:
  description: Keys persisted but not applied at runtime, with the reason.
  returned: always
  type: dict
"""

import errno
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def normalise(value):
    if isinstance(value, bool):
        value = int(value)
    return " ".join(str(value).split())


def render(settings, header):
    lines = ["# " + header]
    for key in sorted(settings):
        lines.append("%s = %s" % (key, normalise(settings[key])))
    return "\n".join(lines) + "\n"


def read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, content):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".preaudit-sysctl.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_runtime(key, wanted, check_mode):
    """Return (changed, reason_not_applied)."""
    proc = "/proc/sys/" + key.replace(".", "/")
    current = read(proc)
    if current is None:
        return False, "the kernel has no such setting"
    if normalise(current) == wanted:
        return False, None
    if check_mode:
        return (True, None) if os.access(proc, os.W_OK) else (False, "read-only /proc/sys (container)")
    try:
        with open(proc, "w") as handle:
            handle.write(wanted)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False, "read-only /proc/sys (container)"
        return False, "cannot set: %s" % exc.strerror
    return True, None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            settings=dict(type="dict", required=True),
            header=dict(type="str", default="Managed by preaudit (os_hardening). Local changes are overwritten."),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    settings = module.params["settings"]
    content = render(settings, module.params["header"])
    before = read(path)
    file_changed = before != content
    if file_changed and not module.check_mode:
        write_atomic(path, content)
    applied = []
    not_applied = {}
    for key in sorted(settings):
        changed, reason = apply_runtime(key, normalise(settings[key]), module.check_mode)
        if changed:
            applied.append(key)
        if reason:
            not_applied[key] = reason
    result = dict(changed=file_changed or bool(applied), applied=applied, not_applied=not_applied, path=path)
    if module._diff:
        result["diff"] = dict(before=before or "", after=content, before_header=path, after_header=path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
