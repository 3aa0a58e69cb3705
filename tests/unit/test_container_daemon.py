"""Docker daemon checks on daemon.json and on what `docker info` reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scanners.containers.daemon import check_daemon_json, check_engine_info
from scanners.errors import InputError
from scanners.findings import Status

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "containers" / "daemon"
LAB_DAEMON_JSON = ROOT / "scanners" / "lab" / "image" / "files" / "etc" / "docker" / "daemon.json"
ALL_D = {
    "CTR-D-001",
    "CTR-D-003",
    "CTR-D-004",
    "CTR-D-005",
    "CTR-D-006",
    "CTR-D-007",
    "CTR-D-008",
    "CTR-D-009",
    "CTR-D-012",
}
DEFAULTS_FAIL = {"CTR-D-004", "CTR-D-006", "CTR-D-007", "CTR-D-008", "CTR-D-009", "CTR-D-012"}


def _failing(path: Path) -> set[str]:
    verdicts = check_daemon_json(path.read_text(), str(path))
    assert sorted(v.control_id for v in verdicts) == sorted(ALL_D), "one verdict per control"
    return {v.control_id for v in verdicts if v.failed}


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        # W-021 (CTR-D-001, -003, -004, -005) plus the settings the lab leaves at Docker's defaults.
        (LAB_DAEMON_JSON, ALL_D),
        (DATA / "hardened" / "daemon.json", set()),
        (DATA / "tls-verified" / "daemon.json", DEFAULTS_FAIL),
        (DATA / "tls-no-verify" / "daemon.json", DEFAULTS_FAIL | {"CTR-D-001"}),
    ],
    ids=["lab", "hardened", "tls-verified", "tls-no-verify"],
)
def test_daemon_json_fails_exactly_its_weaknesses(fixture: Path, expected: set[str]) -> None:
    assert _failing(fixture) == expected


def test_empty_daemon_json_fails_every_setting_left_at_the_default() -> None:
    verdicts = check_daemon_json("{}", "daemon.json")
    assert {v.control_id for v in verdicts if v.failed} == DEFAULTS_FAIL | {"CTR-D-005"}


def test_findings_point_at_the_key_and_explain_tls() -> None:
    verdicts = {v.control_id: v for v in check_daemon_json(LAB_DAEMON_JSON.read_text(), "daemon.json")}
    assert verdicts["CTR-D-001"].line == 2
    assert verdicts["CTR-D-001"].summary == "API on tcp://0.0.0.0:2375 with no TLS"
    assert verdicts["CTR-D-003"].observed == {"insecure-registries": ["registry.montecarlo.lab:5000"]}
    tls = {v.control_id: v for v in check_daemon_json((DATA / "tls-no-verify" / "daemon.json").read_text(), "x")}
    assert tls["CTR-D-001"].summary == "API on tcp://127.0.0.1:2376 with TLS without client verification"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"icc": false,}', r"daemon.json: not JSON \(line 1"),
        ("[1, 2]", "must be a JSON object, not list"),
    ],
)
def test_invalid_daemon_json_is_an_input_error(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_daemon_json(text, "daemon.json")


def _info(**overrides: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "LiveRestoreEnabled": False,
        "SecurityOptions": ["name=seccomp,profile=default"],
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True}},
        },
    }
    info.update(overrides)
    return info


def test_engine_info_defaults() -> None:
    verdicts = {v.control_id: v for v in check_engine_info(_info(), None)}
    assert {k for k, v in verdicts.items() if v.failed} == {"CTR-D-006", "CTR-D-009"}
    # The engine's own loopback entry is not an insecure registry someone configured.
    assert verdicts["CTR-D-003"].status is Status.PASS
    assert verdicts["CTR-D-004"].status is Status.NOT_APPLICABLE


def test_engine_info_hardened_and_weak() -> None:
    hardened = _info(LiveRestoreEnabled=True, SecurityOptions=["name=seccomp,profile=default", "name=userns"])
    icc_off = {"com.docker.network.bridge.enable_icc": "false"}
    assert not [v for v in check_engine_info(hardened, icc_off) if v.failed]
    weak = _info(
        RegistryConfig={
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {"registry.montecarlo.lab:5000": {"Secure": False}},
        }
    )
    failing = {v.control_id for v in check_engine_info(weak, {}) if v.failed}
    assert failing == {"CTR-D-003", "CTR-D-004", "CTR-D-006", "CTR-D-009"}
