"""Runtime rules on `docker inspect` data: the settings the integration test cannot create on this machine."""

from __future__ import annotations

from typing import Any

import pytest

from scanners.containers.runtime_rules import EngineFacts, check_container

ENGINE = EngineFacts.from_info({"SecurityOptions": ["name=apparmor", "name=seccomp,profile=default"]})
ALL_R = {f"CTR-R-{i:03d}" for i in range(1, 12)}


def _hardened(**host_config: Any) -> dict[str, Any]:
    return {
        "Name": "/app",
        "AppArmorProfile": "docker-default",
        "Config": {"User": "10001:10001", "Image": "app:1"},
        "Mounts": [{"Type": "volume", "Source": "/var/lib/docker/volumes/data/_data", "RW": True}],
        "HostConfig": {
            "Privileged": False,
            "CapAdd": ["NET_BIND_SERVICE"],
            "CapDrop": ["ALL"],
            "NetworkMode": "bridge",
            "PidMode": "",
            "IpcMode": "private",
            "UTSMode": "",
            "ReadonlyRootfs": True,
            "Memory": 268435456,
            "PidsLimit": 128,
            "SecurityOpt": ["no-new-privileges:true"],
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
            **host_config,
        },
    }


def _failing(attrs: dict[str, Any], engine: EngineFacts = ENGINE) -> set[str]:
    verdicts = check_container(attrs, engine)
    assert sorted(v.control_id for v in verdicts) == sorted(ALL_R), "one verdict per control"
    return {v.control_id for v in verdicts if v.failed}


def test_hardened_container_passes_everything() -> None:
    assert _failing(_hardened()) == set()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"UTSMode": "host"}, {"CTR-R-003"}),
        ({"IpcMode": "host", "NetworkMode": "host"}, {"CTR-R-003"}),
        ({"SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"]}, {"CTR-R-009"}),
        ({"SecurityOpt": ["no-new-privileges", "apparmor:unconfined"]}, {"CTR-R-009"}),
        ({"SecurityOpt": ["no-new-privileges=false"]}, {"CTR-R-011"}),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}, {"CTR-R-010"}),
        ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0}}, {"CTR-R-010"}),
        ({"CapAdd": ["ALL"]}, {"CTR-R-002"}),
        ({"Privileged": True}, {"CTR-R-001", "CTR-R-009"}),
        ({"PidsLimit": -1, "Memory": 0}, {"CTR-R-007", "CTR-R-008"}),
    ],
    ids=str,
)
def test_each_weak_setting_fails_its_control(change: dict[str, Any], expected: set[str]) -> None:
    assert _failing(_hardened(**change)) == expected


@pytest.mark.parametrize(
    ("mount", "failing"),
    [
        ({"Type": "bind", "Source": "/etc", "Destination": "/host-etc", "RW": False}, True),
        ({"Type": "bind", "Source": "/etc/localtime", "Destination": "/etc/localtime", "RW": False}, False),
        ({"Type": "bind", "Source": "/run/docker.sock", "Destination": "/var/run/docker.sock", "RW": False}, True),
        ({"Type": "bind", "Source": "/srv/engine/api.sock", "Destination": "/api.sock", "RW": True}, True),
        ({"Type": "bind", "Source": "/srv/results", "Destination": "/results", "RW": True}, False),
    ],
)
def test_mount_rules(mount: dict[str, Any], failing: bool) -> None:
    engine = EngineFacts(seccomp=True, seccomp_profile="default", engine_sockets=frozenset({"/srv/engine/api.sock"}))
    attrs = _hardened()
    attrs["Mounts"] = [mount]
    assert ("CTR-R-004" in _failing(attrs, engine)) is failing


def test_engine_without_seccomp_or_with_unconfined_default_leaves_containers_unconfined() -> None:
    assert _failing(_hardened(), EngineFacts.from_info({"SecurityOptions": []})) == {"CTR-R-009"}
    unconfined = EngineFacts.from_info({"SecurityOptions": ["name=seccomp,profile=unconfined"]})
    assert _failing(_hardened(), unconfined) == {"CTR-R-009"}


def test_root_user_spellings() -> None:
    for user in ("", "root", "0", "0:0", "root:app"):
        attrs = _hardened()
        attrs["Config"]["User"] = user
        assert _failing(attrs) == {"CTR-R-006"}, user
