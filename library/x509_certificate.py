#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Private keys and server certificates: create, renew, have an internal CA sign, or validate."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: x509_certificate
short_description: Keys and TLS server certificates (self-signed, internal CA or supplied), built on cryptography
description:
  - One call handles every certificate of a host. Needs python3-cryptography on the target
    (Debian 12's 38.0 is enough); C(state=sign) runs on the controller (C(delegate_to: localhost)),
    so that a CA private key never leaves it.
  - C(state=present) (target) creates the private key when it is missing, or replaces it when its
    type or size is not the one wanted (providers C(selfsigned) and C(ca) only; a key is never
    replaced on a normal run), fixes the key file to 0600 root:root, and judges the certificate:
    key match, validity now and for C(renew_days) more days, lifespan, key size or curve, no MD5/SHA-1
    signature, subjectAltName covering every name, chain order and, with C(ca_certificate), the
    issuer. A certificate that is not fit is replaced by a new self-signed one (C(selfsigned)), or a
    certificate signing request is returned for the CA (C(ca)); a C(supplied) certificate is never
    changed, its problems are returned.
  - C(state=sign) (controller) signs the returned requests with the CA for the names given here
    (the names a request asks for are not trusted).
  - C(state=install) (target) writes the signed certificates after checking that each matches its key.
  - Never returns a private key. Supports check mode.
options:
  state:
    type: str
    choices: [present, sign, install]
    default: present
    description: What to do (see the description).
  certificates:
    type: list
    elements: dict
    required: true
    description:
      - C(name), C(certificate) (path; leaf then intermediates), C(private_key) (path), C(names)
        (subjectAltName, the first is also the common name), C(provider) (selfsigned, ca, supplied),
        C(key_type) (ec, rsa), C(key_size), C(key_curve), C(days), C(force) (issue a new certificate
        now, keeping the key).
  renew_days:
    type: int
    default: 30
    description: A certificate expiring within this many days is renewed (or reported, when supplied).
  max_days:
    type: int
    default: 366
    description: Longest acceptable lifespan of a certificate.
  min_rsa_bits:
    type: int
    default: 2048
    description: Smallest acceptable RSA key.
  curves:
    type: list
    elements: str
    default: [secp256r1, secp384r1]
    description: Acceptable EC curves.
  ca_certificate:
    type: str
    description:
      - PEM of the issuing CA. C(state=present) judges the issuer with it; C(state=install) appends it
        to the certificate file when it is an intermediate.
  ca_certificate_path:
    type: path
    description: CA certificate file on the controller (state=sign).
  ca_private_key_path:
    type: path
    description: CA private key file on the controller (state=sign).
  ca_private_key_passphrase:
    type: str
    description: Passphrase of an encrypted CA key (state=sign).
  requests:
    type: dict
    default: {}
    description: Map of certificate name to CSR PEM (state=sign).
  issued:
    type: dict
    default: {}
    description: Map of certificate name to certificate PEM (state=install).
author: preaudit
"""

EXAMPLES = r"""
- name: Keys and certificates of the endpoints
  x509_certificate:
    certificates:
      - {name: montecarlo, certificate: /etc/ssl/montecarlo/server.crt, private_key: /etc/ssl/montecarlo/server.key,
         names: [sim-1, montecarlo.lab], provider: ca, key_type: ec, key_size: 3072, key_curve: secp256r1, days: 365}
    ca_certificate: "{{ lookup('ansible.builtin.file', tls_hardening_ca_cert) }}"
  register: tls
"""

RETURN = r"""
certificates:
  description: >-
    Map of name to what was found and done: action (unchanged, selfsigned, request, installed,
    signed, invalid), reasons, key (type), key_created, key_mode_fixed (the key file was made 0600
    root:root), not_after, issuer, names, ocsp_url, self_signed,
    request (CSR PEM, state=present with provider ca) or certificate (PEM, state=sign).
  returned: always
  type: dict
"""

import datetime
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.preaudit_x509 import (
        CertificateError,
        build_csr,
        certificate_pem,
        issued_by,
        key_description,
        load_certificates,
        load_csr,
        load_private_key,
        new_private_key,
        not_after,
        ocsp_url,
        private_key_pem,
        self_issued,
        self_signed,
        sign_csr,
        subject_alt_names,
        validate,
        wanted_key_description,
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    IMPORT_ERROR = None
except ImportError as exc:  # python3-cryptography is missing on the target
    IMPORT_ERROR = str(exc)

CERT_DEFAULTS: dict[str, Any] = {
    "provider": "selfsigned",
    "key_type": "ec",
    "key_size": 3072,
    "key_curve": "secp256r1",
    "days": 365,
    "force": False,
}


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    old_umask = os.umask(0o077)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    finally:
        os.umask(old_umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.geteuid() == 0:
            os.chown(tmp, 0, 0)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def key_file_wrong(path: str) -> bool:
    st = os.lstat(path)
    owner_wrong = os.geteuid() == 0 and (st.st_uid != 0 or st.st_gid != 0)
    return owner_wrong or (st.st_mode & 0o7777) != 0o600


def describe(chain: list[Any]) -> dict[str, Any]:
    leaf = chain[0]
    return {
        "not_after": not_after(leaf).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuer": leaf.issuer.rfc4514_string(),
        "names": subject_alt_names(leaf),
        "ocsp_url": ocsp_url(leaf),
        "self_signed": self_issued(leaf),
    }


def key_is_wanted(key: Any, spec: dict[str, Any]) -> bool:
    return bool(key_description(key) == wanted_key_description(spec["key_type"], spec["key_size"], spec["key_curve"]))


def present(module: AnsibleModule, spec: dict[str, Any], ca: Any, now: datetime.datetime) -> dict[str, Any]:
    params = module.params
    out: dict[str, Any] = {"action": "unchanged", "reasons": [], "key_created": False, "key_mode_fixed": False}
    out["changed"] = False
    provider = spec["provider"]
    key_path, cert_path = spec["private_key"], spec["certificate"]
    key = None
    key_data = read(key_path)
    if key_data is not None:
        try:
            key = load_private_key(key_data)
        except CertificateError as exc:
            out["reasons"].append("private key: %s" % exc)
    elif provider == "supplied":
        out["reasons"].append("no private key at %s" % key_path)
    if provider != "supplied" and (key is None or not key_is_wanted(key, spec)):
        wanted = wanted_key_description(spec["key_type"], spec["key_size"], spec["key_curve"])
        if key is not None:
            out["reasons"].append("key is %s, wanted %s" % (key_description(key), wanted))
        elif key_data is None:
            out["reasons"].append("no private key")
        key = None if module.check_mode else new_private_key(spec["key_type"], spec["key_size"], spec["key_curve"])
        if key is not None:
            write_atomic(key_path, private_key_pem(key), 0o600)
        out.update(key_created=True, changed=True)
    elif key_data is not None and key_file_wrong(key_path):
        out.update(changed=True, key_mode_fixed=True)
        if not module.check_mode:
            if os.geteuid() == 0:
                os.chown(key_path, 0, 0)
            os.chmod(key_path, 0o600)
    out["key"] = (
        key_description(key)
        if key is not None
        else wanted_key_description(spec["key_type"], spec["key_size"], spec["key_curve"])
    )

    chain = []
    cert_data = read(cert_path)
    if cert_data is None:
        out["reasons"].append("no certificate at %s" % cert_path)
    else:
        try:
            chain = load_certificates(cert_data)
        except CertificateError as exc:
            out["reasons"].append("certificate: %s" % exc)
    if chain:
        out.update(describe(chain))
        out["reasons"] += validate(
            chain,
            key if not out["key_created"] else None,
            spec["names"],
            now,
            params["renew_days"],
            params["min_rsa_bits"],
            params["curves"],
            min(params["max_days"], spec["days"] + 1) if provider != "supplied" else params["max_days"],
            ca if provider == "ca" else None,
        )
    if out["key_created"] and chain:
        out["reasons"].append("new key")
    if spec["force"] and provider != "supplied":
        out["reasons"].append("renewal forced")
    if not out["reasons"]:
        return out
    if provider == "supplied":
        out["action"] = "invalid"
        return out
    if provider == "selfsigned":
        out.update(action="selfsigned", changed=True)
        if key is not None:
            cert = self_signed(key, spec["names"], now, spec["days"])
            write_atomic(cert_path, certificate_pem(cert), 0o644)
            out.update(describe([cert]))
        return out
    out["action"] = "request"
    if key is not None:
        out["request"] = build_csr(key, spec["names"]).public_bytes(Encoding.PEM).decode("ascii")
    return out


def install(module: AnsibleModule, spec: dict[str, Any], pem: str, ca: Any) -> dict[str, Any]:
    chain = load_certificates(pem.encode("ascii"))
    key_data = read(spec["private_key"])
    if key_data is None:
        module.fail_json(
            msg="%s: no private key at %s to install the certificate for" % (spec["name"], spec["private_key"])
        )
    key = load_private_key(key_data)
    problems = validate(chain, key, spec["names"], datetime.datetime.now(datetime.timezone.utc), 0, ca=ca)
    if problems:
        module.fail_json(msg="%s: refusing to install the issued certificate: %s" % (spec["name"], "; ".join(problems)))
    if ca is not None and not self_issued(ca) and issued_by(chain[-1], ca):
        chain.append(ca)
    data = b"".join(certificate_pem(c) for c in chain)
    out = {"action": "unchanged", "reasons": [], "changed": False}
    out.update(describe(chain))
    if read(spec["certificate"]) != data:
        out.update(action="installed", changed=True)
        if not module.check_mode:
            write_atomic(spec["certificate"], data, 0o644)
    return out


def sign(module: AnsibleModule, spec: dict[str, Any], request: str, now: datetime.datetime) -> dict[str, Any]:
    params = module.params
    ca_data, key_data = read(params["ca_certificate_path"] or ""), read(params["ca_private_key_path"] or "")
    if ca_data is None or key_data is None:
        module.fail_json(
            msg="state=sign needs ca_certificate_path and ca_private_key_path that exist on the controller"
        )
    passphrase = params["ca_private_key_passphrase"]
    ca = load_certificates(ca_data)[0]
    ca_key = load_private_key(key_data, passphrase.encode("utf-8") if passphrase else None)
    cert = sign_csr(load_csr(request.encode("ascii")), ca, ca_key, spec["names"], now, spec["days"])
    out = {"action": "signed", "reasons": [], "changed": False, "certificate": certificate_pem(cert).decode("ascii")}
    out.update(describe([cert]))
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "sign", "install"], default="present"),
            certificates=dict(type="list", elements="dict", required=True),
            renew_days=dict(type="int", default=30),
            max_days=dict(type="int", default=366),
            min_rsa_bits=dict(type="int", default=2048),
            curves=dict(type="list", elements="str", default=["secp256r1", "secp384r1"]),
            ca_certificate=dict(type="str"),
            ca_certificate_path=dict(type="path"),
            ca_private_key_path=dict(type="path"),
            ca_private_key_passphrase=dict(type="str", no_log=True),
            requests=dict(type="dict", default={}),
            issued=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg="python3-cryptography is needed on %s: %s"
            % ("the controller" if module.params["state"] == "sign" else "the target", IMPORT_ERROR),
            missing_library="cryptography",
        )
    params = module.params
    now = datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, Any] = {}
    try:
        ca = load_certificates(params["ca_certificate"].encode("ascii"))[0] if params["ca_certificate"] else None
        for raw in params["certificates"]:
            spec = dict(CERT_DEFAULTS)
            spec.update({k: v for k, v in raw.items() if v is not None})
            for required in ("name", "certificate", "private_key", "names"):
                if not spec.get(required):
                    module.fail_json(msg="certificate %r: %s is required" % (raw.get("name"), required))
            if spec["provider"] not in ("selfsigned", "ca", "supplied"):
                module.fail_json(msg="%s: provider must be selfsigned, ca or supplied" % spec["name"])
            if spec["provider"] == "ca" and ca is None and params["state"] == "present":
                module.fail_json(msg="%s: provider ca needs ca_certificate" % spec["name"])
            name = spec["name"]
            if params["state"] == "present":
                results[name] = present(module, spec, ca, now)
            elif params["state"] == "sign" and name in params["requests"]:
                results[name] = sign(module, spec, params["requests"][name], now)
            elif params["state"] == "install" and name in params["issued"]:
                results[name] = install(module, spec, params["issued"][name], ca)
    except CertificateError as exc:
        module.fail_json(msg=str(exc), certificates=results)
    except OSError as exc:
        module.fail_json(
            msg="%s: %s" % (getattr(exc, "filename", "") or "file", exc.strerror or exc), certificates=results
        )
    changed = any(r.pop("changed") for r in results.values())
    module.exit_json(changed=changed, certificates=results)


if __name__ == "__main__":
    main()
