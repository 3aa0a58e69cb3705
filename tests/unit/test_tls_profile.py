"""Mozilla profile deviations: every key sslyze's checker can report is owned by one TLS control."""

from __future__ import annotations

import inspect
import re

from sslyze.mozilla_tls_profile import tls_config_checker

from scanners.catalog import default_catalog
from scanners.findings import Status
from scanners.tls.mozilla import deviation_owners, route
from scanners.tls.observation import Verdict


def checker_issue_keys() -> set[str]:
    """The issue keys the pinned sslyze's checker writes (``issues_with_...["key"] = ...``), plus HSTS."""
    source = inspect.getsource(tls_config_checker)
    return set(re.findall(r'issues_with_\w+\["(\w+)"\]', source))


def test_the_checker_source_still_has_the_keys_we_expect() -> None:
    keys = checker_issue_keys()
    assert {"tls_versions", "ciphers", "certificate_path_validation", "tls_vulnerability_robot"} <= keys
    assert len(keys) >= 18


def test_every_checker_issue_key_has_exactly_one_owning_control() -> None:
    catalog = default_catalog()
    owners = deviation_owners(catalog)
    assert checker_issue_keys() <= set(owners)
    listed = [key for c in catalog.by_evaluator("tls") for key in c.references.get("mozilla-tls", ())]
    assert len(listed) == len(set(listed)), "a deviation key is listed by two controls"
    assert owners["tls_versions"] == "TLS-001" and owners["rsa_key_size"] == "TLS-007"


def test_only_tls_controls_carry_mozilla_references() -> None:
    for control in default_catalog():
        if "mozilla-tls" in control.references:
            assert control.evaluator == "tls", control.id


def _verdict(status: Status) -> Verdict:
    return Verdict(status, "")


def test_path_validation_goes_to_trust_unless_only_the_dates_are_wrong() -> None:
    owners = deviation_owners(default_catalog())
    deviation = {"certificate_path_validation": "Certificate path validation failed for CN=x."}
    untrusted = {"TLS-006": _verdict(Status.FAIL), "TLS-005": _verdict(Status.FAIL)}
    routed, unowned = route(deviation, owners, untrusted)
    assert routed == {"TLS-006": deviation} and not unowned
    expired_but_trusted = {"TLS-006": _verdict(Status.PASS), "TLS-005": _verdict(Status.FAIL)}
    assert route(deviation, owners, expired_but_trusted)[0] == {"TLS-005": deviation}
    # trusted and in date, yet sslyze disagrees: the deviation still fails trust
    assert route(deviation, owners, {"TLS-006": _verdict(Status.PASS), "TLS-005": _verdict(Status.PASS)})[0] == {
        "TLS-006": deviation
    }


def test_an_unknown_deviation_is_kept_not_dropped() -> None:
    routed, unowned = route({"new_check_in_sslyze_7": "something"}, deviation_owners(default_catalog()), {})
    assert routed == {} and unowned == {"new_check_in_sslyze_7": "something"}
