"""Framework requirement lists: complete where the standard is closed, strict on load, and a
superset of every reference the shipped catalog makes (read at test time: others extend it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scanners.catalog import load_catalog
from scanners.errors import InputError
from scanners.frameworks import READINESS_FRAMEWORKS, Requirement, load_frameworks, parse_framework


def requirement(key: str, rid: str) -> Requirement:
    found = load_frameworks()[key].get(rid)
    assert found is not None, f"{key} {rid} is not listed"
    return found


def test_every_catalog_reference_is_a_listed_requirement() -> None:
    catalog = load_catalog()  # the YAML on disk now, not a cached copy
    frameworks = load_frameworks()
    missing = sorted(
        f"{control.id}: {kind} {rid}"
        for control in catalog
        for kind, ids in control.references.items()
        if kind in frameworks
        for rid in ids
        if rid not in frameworks[kind]
    )
    assert not missing, "catalog references requirements the framework lists lack:\n" + "\n".join(missing)


def test_iso27001_annex_a_has_all_93_controls_in_order() -> None:
    iso = load_frameworks()["iso27001"]
    expected = (
        [f"A.5.{i}" for i in range(1, 38)]
        + [f"A.6.{i}" for i in range(1, 9)]
        + [f"A.7.{i}" for i in range(1, 15)]
        + [f"A.8.{i}" for i in range(1, 35)]
    )
    assert [r.id for r in iso] == expected
    assert requirement("iso27001", "A.8.24").title == "Use of cryptography"
    # People and physical controls are never assessed by a scan.
    assert all(r.manual for r in iso if r.id.startswith(("A.6.", "A.7.")))


def test_soc2_lists_the_common_criteria_availability_and_confidentiality() -> None:
    soc2 = load_frameworks()["soc2"]
    ids = [r.id for r in soc2]
    common = [f"CC{group}.{i}" for group, n in [(1, 5), (2, 3), (3, 4), (4, 2), (5, 3), (6, 8), (7, 5), (8, 1), (9, 2)]
              for i in range(1, n + 1)]  # fmt: skip
    assert ids == [*common, "A1.1", "A1.2", "A1.3", "C1.1", "C1.2"]
    assert requirement("soc2", "CC6.4").manual  # physical access
    assert not requirement("soc2", "CC6.1").manual  # logical access: scanned


@pytest.mark.parametrize(("key", "sample", "title"), [
    ("cis-debian12", "5.1.20", "Ensure sshd PermitRootLogin is disabled"),
    ("cis-debian12", "3.3.10", "Ensure tcp syn cookies is enabled"),
    ("cis-docker", "5.5", "Ensure that privileged containers are not used"),
    ("cis-docker", "2.10", "Ensure the default cgroup usage has been confirmed"),
])  # fmt: skip
def test_cis_lists_keep_ids_that_look_like_numbers(key: str, sample: str, title: str) -> None:
    assert requirement(key, sample).title == title
    ids = [r.id for r in load_frameworks()[key]]
    assert len(ids) == len(set(ids))


def test_frameworks_come_in_report_order() -> None:
    assert tuple(load_frameworks()) == READINESS_FRAMEWORKS


def _sections(*requirements: object) -> dict[str, object]:
    return {"framework": "soc2", "name": "t", "sections": [{"title": "S", "requirements": list(requirements)}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_sections({"id": 2.1, "title": "t"}), "must be a quoted string"),
        (_sections({"id": "X1", "title": "a"}, {"id": "X1", "title": "b"}), "duplicate requirement id X1"),
        (_sections({"id": "X1", "title": "a", "auto": True}), "unknown key(s) auto"),
        (_sections({"id": "X1", "title": ""}), "title must be a non-empty string"),
        (_sections({"id": "X1", "title": "a", "manual": "yes"}), "manual must be true or false"),
        ({**_sections({"id": "X1", "title": "a"}), "framework": "pci"}, "unknown framework 'pci'"),
        ({"framework": "soc2", "name": "t", "sections": []}, "sections must be a non-empty list"),
        ({"framework": "soc2"}, "expected a mapping"),
    ],
)
def test_malformed_lists_are_refused_with_the_reason(data: object, message: str) -> None:
    with pytest.raises(InputError, match=r"framework list test\.yml") as raised:
        parse_framework(data, "test.yml")
    assert message in str(raised.value)


def test_loading_a_directory_needs_every_readiness_framework(tmp_path: Path) -> None:
    (tmp_path / "soc2.yml").write_text(yaml.safe_dump(_sections({"id": "CC1.1", "title": "t"})))
    with pytest.raises(InputError, match="framework lists missing for iso27001, cis-debian12, cis-docker"):
        load_frameworks(tmp_path)
