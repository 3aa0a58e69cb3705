#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: preaudit contributors. Apache-2.0.
"""Private keys and server certificates: keys made and kept on the host; certificates judged and
issued by an internal CA on the controller, self-signed on the host, or validated when supplied."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: x509_certificate
short_description: Keys and TLS server certificates (internal CA, self-signed or supplied)
description:
  - One call per step handles every certificate of a host. The private key is made on the host and
    never leaves it; only public data (the public key, certificates) travels.
  - C(state=inspect) (target, Python standard library and C(ssh-keygen) only) creates the private key
    when it is missing, or replaces it when its type or size is not the one wanted (providers
    C(ca) and C(selfsigned); a C(supplied) key is never changed), makes the key file 0600 root:root,
    and returns the key's public key and the certificate file's certificates.
  - C(state=judge) (controller, C(delegate_to: localhost), needs cryptography there) judges each
    certificate against the public key C(state=inspect) returned: key match, validity now and for
    C(renew_days) more days, lifespan, key size or curve, no MD5/SHA-1 signature, subjectAltName
    covering every name, chain order and, for C(ca), the issuer. For C(ca) a certificate that is not
    fit is issued anew by the CA, directly for the host's public key and the names given here; the CA
    key is read on the controller only. A C(supplied) certificate that is not fit is reported.
  - C(state=install) (target, standard library only) writes the issued certificates, each only after
    checking that it certifies the public key of the key file.
  - C(state=present) (target, needs python3-cryptography there) is the self-signed path: a
    self-signed certificate is signed with the host's own key, so only the host can make it. It
    creates or replaces the key like C(state=inspect), judges the certificate, and replaces one that
    is not fit with a new self-signed one; a C(supplied) one is judged and never changed.
  - Never returns a private key. Supports check mode.
options:
  state:
    type: str
    choices: [present, inspect, judge, install]
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
  ca_certificate_path:
    type: path
    description: CA certificate file on the controller (state=judge, provider ca).
  ca_private_key_path:
    type: path
    description: CA private key file on the controller (state=judge, read only when a certificate is issued).
  ca_private_key_passphrase:
    type: str
    description: Passphrase of an encrypted CA key (state=judge).
  inspected:
    type: dict
    default: {}
    description: The C(certificates) result of C(state=inspect) on the host (state=judge).
  issued:
    type: dict
    default: {}
    description: Map of certificate name to the PEM chain to install (state=install).
author: preaudit
"""

EXAMPLES = r"""
- name: Keys on the host, public keys and certificates back
  x509_certificate:
    state: inspect
    certificates: &certs
      - {name: montecarlo, certificate: /etc/ssl/montecarlo/server.crt, private_key: /etc/ssl/montecarlo/server.key,
         names: [sim-1, montecarlo.lab], provider: ca, key_type: ec, key_size: 3072, key_curve: secp256r1, days: 365}
  register: seen

- name: Judge them, and have the CA issue the ones that are not fit
  x509_certificate:
    state: judge
    certificates: *certs
    inspected: "{{ seen.certificates }}"
    ca_certificate_path: /srv/pki/internal-ca.crt
    ca_private_key_path: /srv/pki/internal-ca.key
  delegate_to: localhost
  register: judged

- name: Install what was issued
  x509_certificate:
    state: install
    certificates: *certs
    issued: "{{ dict(judged.certificates | dict2items | selectattr('value.issued', 'defined')
                 | map(attribute='key') | zip(judged.certificates.values() | selectattr('issued', 'defined')
                 | map(attribute='issued'))) }}"
"""

RETURN = r"""
certificates:
  description: >-
    Map of name to what was found and done: action (unchanged; inspect: unchanged; judge: issued,
    invalid; install: installed; present: selfsigned, invalid), reasons, key (type, e.g. EC secp256r1),
    key_created, key_mode_fixed (the key file was made 0600 root:root), public_key (PEM, inspect),
    certificate_pem (the certificates of the certificate file, inspect), not_after, issuer, names,
    ocsp_url, self_signed (judge, present), issued (PEM chain to install, judge).
  returned: always
  type: dict
"""

import datetime
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.preaudit_keyfile import (
    KeyFileError,
    certificate_spki,
    certificates,
    create_key,
    describe,
    pem,
    private_key_spki,
    wanted,
)

try:
    from ansible.module_utils.preaudit_x509 import (
        CertificateError,
        certificate_pem,
        issue,
        key_description,
        load_certificates,
        load_private_key,
        load_public_key,
        new_private_key,
        not_after,
        ocsp_url,
        private_key_pem,
        self_issued,
        self_signed,
        subject_alt_names,
        validate,
    )

    IMPORT_ERROR = None
except ImportError as exc:  # no python3-cryptography here: inspect and install still work
    IMPORT_ERROR = str(exc)

    class CertificateError(Exception):  # type: ignore[no-redef]
        """Stands in for the real one, so that the handlers below stay valid."""


CERT_DEFAULTS: dict[str, Any] = {
    "provider": "selfsigned",
    "key_type": "ec",
    "key_size": 3072,
    "key_curve": "secp256r1",
    "days": 365,
    "force": False,
}
# Where each state runs, for the message when cryptography is missing there.
NEEDS_CRYPTOGRAPHY = {
    "present": "the target (a self-signed certificate is signed with the host's key)",
    "judge": "the controller",
}
PROVIDERS = {
    "present": ("selfsigned", "supplied"),
    "inspect": ("selfsigned", "ca", "supplied"),
    "judge": ("ca", "supplied"),
    "install": ("ca",),
}


# -- files --------------------------------------------------------------------------------


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


def fix_key_file(path: str) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    os.chmod(path, 0o600)


def wanted_key(spec: dict[str, Any]) -> str:
    return str(wanted(spec["key_type"], spec["key_size"], spec["key_curve"]))


# -- state=inspect (target, standard library) -----------------------------------------------


def current_key(spec: dict[str, Any], out: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """The key file's content and public key (None when missing or unreadable, with the reason)."""
    data = read(spec["private_key"])
    if data is None:
        out["reasons"].append(
            "no private key at %s" % spec["private_key"] if spec["provider"] == "supplied" else "no private key"
        )
        return None, None
    try:
        return data, private_key_spki(data)
    except KeyFileError as exc:
        out["reasons"].append("private key: %s" % exc)
        return data, None


def inspect(module: AnsibleModule, spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"action": "unchanged", "reasons": [], "key_created": False, "key_mode_fixed": False}
    out["changed"] = False
    data, spki = current_key(spec, out)
    if spec["provider"] != "supplied" and (spki is None or describe(spki) != wanted_key(spec)):
        if spki is not None:
            out["reasons"].append("key is %s, wanted %s" % (describe(spki), wanted_key(spec)))
        spki = None
        if not module.check_mode:
            ssh_keygen = module.get_bin_path("ssh-keygen")
            if ssh_keygen is None:
                module.fail_json(msg="%s: ssh-keygen (openssh-client) is needed to create the key" % spec["name"])
            create_key(spec["private_key"], spec["key_type"], spec["key_size"], spec["key_curve"], ssh_keygen)
            spki = private_key_spki(read(spec["private_key"]) or b"")
        out.update(key_created=True, changed=True)
    elif data is not None and key_file_wrong(spec["private_key"]):
        out.update(changed=True, key_mode_fixed=True)
        if not module.check_mode:
            fix_key_file(spec["private_key"])
    out["key"] = describe(spki) if spki is not None else wanted_key(spec)
    if spki is not None:
        out["public_key"] = pem("PUBLIC KEY", spki).decode("ascii")
    cert_data = read(spec["certificate"])
    if cert_data is not None:
        # Only the certificates: a file that also holds a key never sends it anywhere.
        try:
            chain = certificates(cert_data)
        except KeyFileError as exc:
            out["reasons"].append("certificate: %s" % exc)
            chain = []
        out["certificate_pem"] = b"".join(pem("CERTIFICATE", der) for der in chain).decode("ascii")
    return out


# -- state=judge (controller, cryptography) -------------------------------------------------


class Issuer:
    """The CA on the controller: its certificate read once, its key only when something is issued."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.cert = None
        self._key = None
        if module.params["ca_certificate_path"]:
            data = read(module.params["ca_certificate_path"])
            if data is None:
                module.fail_json(
                    msg="the CA certificate %s does not exist on the controller" % module.params["ca_certificate_path"]
                )
            self.cert = load_certificates(data)[0]

    def key(self) -> Any:
        if self._key is None:
            params = self.module.params
            data = read(params["ca_private_key_path"] or "")
            if data is None:
                self.module.fail_json(msg="issuing needs ca_private_key_path, a file on the controller")
            passphrase = params["ca_private_key_passphrase"]
            self._key = load_private_key(data, passphrase.encode("utf-8") if passphrase else None)
        return self._key


def describe_chain(chain: list[Any]) -> dict[str, Any]:
    leaf = chain[0]
    return {
        "not_after": not_after(leaf).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuer": leaf.issuer.rfc4514_string(),
        "names": subject_alt_names(leaf),
        "ocsp_url": ocsp_url(leaf),
        "self_signed": self_issued(leaf),
    }


def read_chain(spec: dict[str, Any], data: bytes | None, reasons: list[str]) -> list[Any]:
    if data is None:
        reasons.append("no certificate at %s" % spec["certificate"])
        return []
    try:
        return list(load_certificates(data))
    except CertificateError as exc:
        reasons.append("certificate: %s" % exc)
        return []


def lifespan_limit(module: AnsibleModule, spec: dict[str, Any]) -> int:
    """What the role issues is held to its own lifespan; a supplied certificate to the profile's."""
    if spec["provider"] == "supplied":
        return int(module.params["max_days"])
    return int(min(module.params["max_days"], spec["days"] + 1))


def judge_chain(
    module: AnsibleModule, spec: dict[str, Any], chain: list[Any], public: Any, ca: Any, now: datetime.datetime
) -> list[str]:
    params = module.params
    return list(
        validate(
            chain,
            public,
            spec["names"],
            now,
            params["renew_days"],
            params["min_rsa_bits"],
            params["curves"],
            lifespan_limit(module, spec),
            ca,
        )
    )


def judge(
    module: AnsibleModule, spec: dict[str, Any], seen: dict[str, Any], issuer: Issuer, now: datetime.datetime
) -> dict[str, Any]:
    out: dict[str, Any] = {"action": "unchanged", "reasons": list(seen.get("reasons") or []), "changed": False}
    public = load_public_key(seen["public_key"].encode("ascii")) if seen.get("public_key") else None
    new_key = bool(seen.get("key_created"))
    text = seen.get("certificate_pem")
    chain = read_chain(spec, None if text is None else text.encode("ascii"), out["reasons"])
    if chain:
        out.update(describe_chain(chain))
        ca = issuer.cert if spec["provider"] == "ca" else None
        # A key made in this run matches no existing certificate: "new key" says why, once.
        out["reasons"] += judge_chain(module, spec, chain, None if new_key else public, ca, now)
        if new_key:
            out["reasons"].append("new key")
    if spec["force"] and spec["provider"] != "supplied":
        out["reasons"].append("renewal forced")
    if not out["reasons"]:
        return out
    if spec["provider"] == "supplied":
        out["action"] = "invalid"
        return out
    out["action"] = "issued"
    if public is None:  # check mode: the host would make its key first
        return out
    cert = issue(public, issuer.cert, issuer.key(), spec["names"], now, spec["days"])
    chain = [cert] + ([] if self_issued(issuer.cert) else [issuer.cert])
    out["issued"] = b"".join(certificate_pem(c) for c in chain).decode("ascii")
    out.update(describe_chain([cert]))
    return out


# -- state=install (target, standard library) -----------------------------------------------


def install(module: AnsibleModule, spec: dict[str, Any], issued: str) -> dict[str, Any]:
    chain = certificates(issued.encode("ascii"))
    if not chain:
        module.fail_json(msg="%s: the issued certificate is not PEM" % spec["name"])
    key_data = read(spec["private_key"])
    if key_data is None:
        module.fail_json(
            msg="%s: no private key at %s to install the certificate for" % (spec["name"], spec["private_key"])
        )
    if certificate_spki(chain[0]) != private_key_spki(key_data):
        module.fail_json(
            msg="%s: refusing to install the issued certificate: it does not certify the key at %s"
            % (spec["name"], spec["private_key"])
        )
    data = b"".join(pem("CERTIFICATE", der) for der in chain)
    out: dict[str, Any] = {"action": "unchanged", "reasons": [], "changed": False}
    if read(spec["certificate"]) != data:
        out.update(action="installed", changed=True)
        if not module.check_mode:
            write_atomic(spec["certificate"], data, 0o644)
    return out


# -- state=present (target, cryptography): self-signed, or supplied judged on the host ------


def present(module: AnsibleModule, spec: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
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
    if provider != "supplied" and (key is None or key_description(key) != wanted_key(spec)):
        if key is not None:
            out["reasons"].append("key is %s, wanted %s" % (key_description(key), wanted_key(spec)))
        elif key_data is None:
            out["reasons"].append("no private key")
        key = None if module.check_mode else new_private_key(spec["key_type"], spec["key_size"], spec["key_curve"])
        if key is not None:
            write_atomic(key_path, private_key_pem(key), 0o600)
        out.update(key_created=True, changed=True)
    elif key_data is not None and key_file_wrong(key_path):
        out.update(changed=True, key_mode_fixed=True)
        if not module.check_mode:
            fix_key_file(key_path)
    out["key"] = key_description(key) if key is not None else wanted_key(spec)

    chain = read_chain(spec, read(cert_path), out["reasons"])
    if chain:
        out.update(describe_chain(chain))
        out["reasons"] += judge_chain(module, spec, chain, key if not out["key_created"] else None, None, now)
        if out["key_created"]:
            out["reasons"].append("new key")
    if spec["force"] and provider != "supplied":
        out["reasons"].append("renewal forced")
    if not out["reasons"]:
        return out
    if provider == "supplied":
        out["action"] = "invalid"
        return out
    out.update(action="selfsigned", changed=True)
    if key is not None:
        cert = self_signed(key, spec["names"], now, spec["days"])
        write_atomic(cert_path, certificate_pem(cert), 0o644)
        out.update(describe_chain([cert]))
    return out


# -- entry point ----------------------------------------------------------------------------


def checked_spec(module: AnsibleModule, raw: dict[str, Any]) -> dict[str, Any]:
    spec = dict(CERT_DEFAULTS)
    spec.update({k: v for k, v in raw.items() if v is not None})
    for required in ("name", "certificate", "private_key", "names"):
        if not spec.get(required):
            module.fail_json(msg="certificate %r: %s is required" % (raw.get("name"), required))
    state = module.params["state"]
    if spec["provider"] not in PROVIDERS[state]:
        module.fail_json(
            msg="%s: state=%s handles providers %s, not %s (a self-signed certificate is made with state=present "
            "on the host; one from the CA with state=inspect, judge and install)"
            % (spec["name"], state, ", ".join(PROVIDERS[state]), spec["provider"])
        )
    return spec


def run(module: AnsibleModule, specs: list[dict[str, Any]], results: dict[str, Any]) -> None:
    """Each certificate's result into ``results`` (filled as it goes, so a failure reports the others)."""
    params = module.params
    state = params["state"]
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer = Issuer(module) if state == "judge" else None
    for spec in specs:
        name = spec["name"]
        if state == "inspect":
            results[name] = inspect(module, spec)
        elif state == "present":
            results[name] = present(module, spec, now)
        elif issuer is not None and name in params["inspected"]:
            if spec["provider"] == "ca" and issuer.cert is None:
                module.fail_json(msg="%s: provider ca needs ca_certificate_path" % name)
            results[name] = judge(module, spec, params["inspected"][name], issuer, now)
        elif state == "install" and name in params["issued"]:
            results[name] = install(module, spec, params["issued"][name])


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "inspect", "judge", "install"], default="present"),
            certificates=dict(type="list", elements="dict", required=True),
            renew_days=dict(type="int", default=30),
            max_days=dict(type="int", default=366),
            min_rsa_bits=dict(type="int", default=2048),
            curves=dict(type="list", elements="str", default=["secp256r1", "secp384r1"]),
            ca_certificate_path=dict(type="path"),
            ca_private_key_path=dict(type="path"),
            ca_private_key_passphrase=dict(type="str", no_log=True),
            inspected=dict(type="dict", default={}),
            issued=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    state = module.params["state"]
    if IMPORT_ERROR is not None and state in NEEDS_CRYPTOGRAPHY:
        module.fail_json(
            msg="python3-cryptography is needed on %s for state=%s: %s"
            % (NEEDS_CRYPTOGRAPHY[state], state, IMPORT_ERROR),
            missing_library="cryptography",
        )
    results: dict[str, Any] = {}
    try:
        specs = [checked_spec(module, raw) for raw in module.params["certificates"]]
        run(module, specs, results)
    except (CertificateError, KeyFileError) as exc:
        module.fail_json(msg=str(exc), certificates=results)
    except OSError as exc:
        module.fail_json(
            msg="%s: %s" % (getattr(exc, "filename", "") or "file", exc.strerror or exc), certificates=results
        )
    changed = any(r.pop("changed") for r in results.values())
    module.exit_json(changed=changed, certificates=results)


if __name__ == "__main__":
    main()
