"""Deviations from the Mozilla profile as sslyze's checker reports them, routed to the controls.

The catalog says which control owns which deviation: each TLS control lists the checker's
issue keys under its ``mozilla-tls`` references. A deviation fails the control that owns it
even when preaudit's own check of that control passed, so nothing the checker finds is lost.
"""

from __future__ import annotations

from collections.abc import Mapping

from sslyze.mozilla_tls_profile.tls_config_checker import (
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationAsJson,
    check_server_against_tls_configuration,
)
from sslyze.scanner.models import ServerScanResult

from scanners.catalog import Catalog
from scanners.findings import Status
from scanners.tls.observation import Verdict

PATH_VALIDATION = "certificate_path_validation"
TRUST_CONTROL = "TLS-006"
VALIDITY_CONTROL = "TLS-005"


def profile_deviations(result: ServerScanResult, profile: TlsConfigurationAsJson) -> tuple[dict[str, str], str | None]:
    """The checker's issues by key, and why it could not run (a scan command failed), if so."""
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return dict(exc.issues), None
    except ServerScanResultIncomplete as exc:
        return {}, str(exc)
    return {}, None


def deviation_owners(catalog: Catalog) -> dict[str, str]:
    """Issue key -> control id, from the ``mozilla-tls`` references of the TLS controls."""
    owners: dict[str, str] = {}
    for control in catalog.by_evaluator("tls"):
        for key in control.references.get("mozilla-tls", ()):
            owners[key] = control.id
    return owners


def route(
    deviations: Mapping[str, str], owners: Mapping[str, str], verdicts: Mapping[str, Verdict]
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Deviations by control id, and those no control owns.

    sslyze validates the chain at the current time, so an expired but otherwise trusted chain
    fails its path validation: that deviation belongs to the validity control, not to trust.
    """
    routed: dict[str, dict[str, str]] = {}
    unowned: dict[str, str] = {}
    for key, text in deviations.items():
        owner = owners.get(key)
        if owner is None:
            unowned[key] = text
            continue
        if key == PATH_VALIDATION:
            trust, validity = verdicts.get(TRUST_CONTROL), verdicts.get(VALIDITY_CONTROL)
            trusted = trust is not None and trust.status == Status.PASS
            if trusted and validity is not None and validity.status == Status.FAIL:
                owner = VALIDITY_CONTROL
        routed.setdefault(owner, {})[key] = text
    return routed, unowned
