#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Ensure many owned files and lines in one module call (check mode, diff, validation, backups)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: managed_files
short_description: Ensure the content, owner and mode of many files, and single lines in others, at once
description:
  - One module call for all the configuration files a role owns, instead of one task per file:
    each Ansible task costs a module start-up on the target, and a role that writes thirty files
    would spend most of its time starting Python.
  - Files are written atomically (temporary file, fsync, rename) after an optional validation
    command, with an optional backup of the previous version.
  - Lines are ensured in files the role does not own (for example /etc/login.defs), like
    lineinfile.
  - Supports check mode and diff mode; changes nothing when everything is already right.
options:
  files:
    description:
      - List of C(path), C(content) (or C(state=directory) / C(state=absent)), C(owner), C(group),
        C(mode) (octal string), C(validate) (a command with C(%s) for the candidate file) and
        C(backup) (bool).
    type: list
    elements: dict
    default: []
  lines:
    description:
      - List of C(path), C(regexp), C(line) and optional C(insertafter) (a regular expression). The
        last line matching C(regexp) is replaced by C(line), or C(line) is added after the last
        line matching C(insertafter) or at the end. With C(backup) on any edit of a file, the
        previous version of that file is kept and named in C(backups).
    type: list
    elements: dict
    default: []
  isolate:
    description:
      - A file that cannot be written (its validation command refuses it, its directory cannot be
        made, a file to edit lines in is missing) is left as it was and listed in C(failed_entries)
        with the C(controls) of its entries, and every other file is still ensured. Without it,
        such a file fails the task.
    type: bool
    default: false
author: preaudit
"""

EXAMPLES = r"""
- name: Write the role's files
  managed_files:
    files:
      - {path: /etc/sudoers.d/60-preaudit, content: "Defaults use_pty\n", mode: "0440", validate: "visudo -cf %s"}
    lines:
      - {path: /etc/login.defs, regexp: '^PASS_MAX_DAYS\s', line: "PASS_MAX_DAYS\t365"}
"""

RETURN = r"""
changed_paths:
  description: Paths whose content, owner, mode or existence changed.
  returned: always
  type: list
failed_entries:
  description: With isolate, the files left as they were, each with C(path), C(controls) and C(reason).
  returned: always
  type: list
backups:
  description: Map of path to the backup of its previous content.
  returned: always
  type: dict
"""

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def wanted_ids(spec):
    uid = pwd.getpwnam(spec.get("owner") or "root").pw_uid
    gid = grp.getgrnam(spec.get("group") or "root").gr_gid
    return uid, gid


def needs_attrs(path, spec):
    st = os.lstat(path)
    uid, gid = wanted_ids(spec)
    mode = int(str(spec["mode"]), 8) if spec.get("mode") else None
    return st.st_uid != uid or st.st_gid != gid or (mode is not None and (st.st_mode & 0o7777) != mode)


def set_attrs(path, spec):
    uid, gid = wanted_ids(spec)
    os.lchown(path, uid, gid)
    if spec.get("mode"):
        os.chmod(path, int(str(spec["mode"]), 8))


class Rejected(Exception):
    """A candidate its validation command refused, or a file to edit that is not there."""


def validate(command, candidate):
    # Like the template module's validate: split the command, substitute the candidate path,
    # run it without a shell.
    argv = [part.replace("%s", candidate) for part in shlex.split(command)]
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except OSError as exc:
        raise Rejected("validation command %s cannot run: %s" % (argv[0], exc.strerror or exc)) from None
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()
        raise Rejected("validation failed (%s): %s" % (command, output[-2000:]))


def write_atomic(module, path, data, spec, before_replace=None):
    """Write a candidate beside ``path``, validate it, then (after ``before_replace``, e.g. a
    backup of the current file) rename it over ``path``. A candidate that fails validation leaves
    nothing behind."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        set_attrs(tmp, spec)
        if spec.get("validate"):
            validate(spec["validate"], tmp)
        if before_replace is not None:
            before_replace()
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def backup(path):
    target = "%s.%s.preaudit-backup" % (path, time.strftime("%Y%m%d%H%M%S"))
    shutil.copy2(path, target)
    return target


def ensure_file(module, spec, result):
    path = spec["path"]
    state = spec.get("state") or "present"
    exists = os.path.lexists(path)
    if state == "absent":
        if exists:
            result["changed_paths"].append(path)
            result["diff"].append({"before_header": path, "after_header": path + " (absent)"})
            if not module.check_mode:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        return
    if state == "directory":
        if not os.path.isdir(path):
            result["changed_paths"].append(path)
            if not module.check_mode:
                os.makedirs(path)
                set_attrs(path, spec)
        elif needs_attrs(path, spec):
            result["changed_paths"].append(path)
            if not module.check_mode:
                set_attrs(path, spec)
        return
    data = spec.get("content", "")
    data = data.encode("utf-8") if not isinstance(data, bytes) else data
    before = read_bytes(path)
    if before != data:
        result["changed_paths"].append(path)
        result["diff"].append(
            {
                "before_header": path,
                "after_header": path,
                "before": (before or b"").decode("utf-8", "replace"),
                "after": data.decode("utf-8", "replace"),
            }
        )
        if not module.check_mode:

            def keep_previous():
                if before is not None and spec.get("backup"):
                    result["backups"][path] = backup(path)

            write_atomic(module, path, data, spec, keep_previous)
    elif needs_attrs(path, spec):
        result["changed_paths"].append(path)
        if not module.check_mode:
            set_attrs(path, spec)


def ensure_lines(module, path, edits, result):
    before = read_bytes(path)
    if before is None:
        raise Rejected("%s does not exist" % path)
    lines = before.decode("utf-8").splitlines()
    for edit in edits:
        pattern = re.compile(edit["regexp"])
        matches = [i for i, line in enumerate(lines) if pattern.search(line)]
        if matches:
            if lines[matches[-1]] != edit["line"]:
                lines[matches[-1]] = edit["line"]
        elif edit["line"] not in lines:
            after_pattern = edit.get("insertafter")
            anchor = [i for i, line in enumerate(lines) if after_pattern and re.search(after_pattern, line)]
            lines.insert(anchor[-1] + 1 if anchor else len(lines), edit["line"])
    after = ("\n".join(lines) + "\n").encode("utf-8")
    if after != before:
        result["changed_paths"].append(path)
        texts = {"before": before.decode("utf-8"), "after": after.decode("utf-8")}
        result["diff"].append(dict(before_header=path, after_header=path, **texts))
        if not module.check_mode:
            if any(edit.get("backup") for edit in edits):
                result["backups"][path] = backup(path)
            st = os.stat(path)
            spec = {"owner": pwd.getpwuid(st.st_uid).pw_name, "group": grp.getgrgid(st.st_gid).gr_name}
            spec["mode"] = "%o" % (st.st_mode & 0o7777)
            write_atomic(module, path, after, spec)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", default=[]),
            lines=dict(type="list", elements="dict", default=[]),
            isolate=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    result: dict[str, Any] = {"changed_paths": [], "backups": {}, "diff": [], "failed_entries": []}

    def refused(path, entries, error):
        # With isolate, a file that cannot be written costs only its own controls: it is left as
        # it was and reported, and every other file is still ensured.
        if not module.params["isolate"]:
            module.fail_json(msg="%s: %s" % (path, error), **result)
        result["changed_paths"] = [p for p in result["changed_paths"] if p != path]
        result["diff"] = [d for d in result["diff"] if d.get("before_header") != path]
        controls = sorted({str(c) for entry in entries for c in entry.get("controls") or ()})
        result["failed_entries"].append({"path": path, "controls": controls, "reason": str(error)})

    for spec in module.params["files"]:
        if not spec.get("path"):
            module.fail_json(msg="every file needs a path: %r" % (spec,))
        try:
            ensure_file(module, spec, result)
        except (Rejected, OSError, KeyError) as exc:
            refused(spec["path"], [spec], exc)
    by_path: dict[str, list[dict[str, Any]]] = {}
    for edit in module.params["lines"]:
        by_path.setdefault(edit["path"], []).append(edit)
    for path, edits in by_path.items():
        try:
            ensure_lines(module, path, edits, result)
        except (Rejected, OSError, re.error, UnicodeDecodeError) as exc:
            refused(path, edits, exc)
    diff = result.pop("diff")
    output = dict(changed=bool(result["changed_paths"]), **result)
    if module._diff:
        output["diff"] = diff
    module.exit_json(**output)


if __name__ == "__main__":
    main()
