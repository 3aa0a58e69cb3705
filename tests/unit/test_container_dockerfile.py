"""Dockerfile checks: each fixture fails exactly its expected controls, and secrets never leak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.containers import scan_container_files
from scanners.containers.dockerfile import check_dockerfile
from scanners.containers.dockerfile_model import DockerfileError, expand, parse_dockerfile
from scanners.findings import Finding, Status
from scanners.scanning import ScanContext, ScanRoot

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "containers" / "dockerfiles"
LAB_DOCKERFILE = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo" / "Dockerfile"
LAB_API_KEY = "mc_lab_4f8a2c91d7e35b60a1f9c8e2d4b7a613"
ALL_F = {f"CTR-F-00{i}" for i in range(1, 7)}


def _failing(text: str) -> set[str]:
    return {v.control_id for v in check_dockerfile(text) if v.failed}


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (FIXTURES / "hardened.Dockerfile", set()),
        (FIXTURES / "weak-multistage.Dockerfile", ALL_F),
        (FIXTURES / "stage-reference.Dockerfile", {"CTR-F-004"}),
        (FIXTURES / "unresolved-tag.Dockerfile", {"CTR-F-001", "CTR-F-002"}),
        # W-016 and W-020 of scanners/lab/weaknesses.yml; the pip cache (CTR-F-006) is a second hit.
        (LAB_DOCKERFILE, ALL_F),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_fixture_fails_exactly_its_expected_controls(fixture: Path, expected: set[str]) -> None:
    verdicts = check_dockerfile(fixture.read_text())
    assert sorted(v.control_id for v in verdicts) == sorted(ALL_F), "one verdict per control"
    assert _failing(fixture.read_text()) == expected


def _scan(path: Path) -> list[Finding]:
    findings: list[Finding] = []
    scan_container_files(ScanContext(default_catalog(), findings.append), [ScanRoot(path, host="sim-1")])
    return findings


def test_lab_dockerfile_findings_name_the_variable_never_the_secret() -> None:
    findings = _scan(LAB_DOCKERFILE)
    secret = next(f for f in findings if f.control_id == "CTR-F-004")
    assert secret.status is Status.FAIL
    assert secret.resource.line == 2
    assert secret.evidence.observed == ["ENV API_KEY (line 2)"]
    assert LAB_API_KEY not in json.dumps([f.to_dict() for f in findings])


def test_secret_values_from_arg_and_url_credentials_stay_out_of_findings(tmp_path: Path) -> None:
    for name in ("weak-multistage.Dockerfile", "stage-reference.Dockerfile"):
        dump = json.dumps([f.to_dict() for f in _scan(FIXTURES / name)])
        for secret in ("hunter2-build-arg", "correct-horse-battery"):
            assert secret not in dump, f"{secret!r} leaked from {name}"
    described = next(f for f in _scan(FIXTURES / "stage-reference.Dockerfile") if f.control_id == "CTR-F-004")
    assert described.evidence.observed == ["ENV DATABASE_URL (line 12)"]


def test_findings_point_at_the_offending_line() -> None:
    lines = {f.control_id: f.resource.line for f in _scan(FIXTURES / "weak-multistage.Dockerfile")}
    assert lines["CTR-F-002"] == 2  # FROM golang:latest
    assert lines["CTR-F-003"] == 11  # ADD ["https://..."]
    assert lines["CTR-F-004"] == 7  # ARG DB_PASSWORD
    assert lines["CTR-F-005"] == 13  # HEALTHCHECK NONE
    assert lines["CTR-F-006"] == 8  # the apt-get RUN spanning lines 8-9
    assert lines["CTR-F-001"] is None  # the problem is a missing instruction


def test_only_the_final_stage_user_counts() -> None:
    text = "FROM debian:12 AS build\nUSER builder\nFROM debian:12\nUSER root\n"
    assert "CTR-F-001" in _failing(text)
    text = "FROM debian:12 AS build\nUSER root\nFROM debian:12\nUSER 10001\n"
    assert "CTR-F-001" not in _failing(text)


@pytest.mark.parametrize(
    ("line", "failing"),
    [
        ("RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*", False),
        ("RUN apt-get update\nRUN rm -rf /var/lib/apt/lists/*", True),  # too late: the lists are in a layer
        ("RUN python3 -m pip install --upgrade pip", True),
        ("RUN pip3 install --no-cache-dir flask", False),
        ("RUN apk add --no-cache curl", False),
        ("RUN apk add curl && rm -rf /var/cache/apk/*", False),
        ('RUN ["pip", "install", "flask"]', True),
    ],
)
def test_package_cache_rules(line: str, failing: bool) -> None:
    text = f"FROM debian:12\n{line}\nUSER 1000\nHEALTHCHECK CMD true\n"
    assert ("CTR-F-006" in _failing(text)) is failing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python:${TAG}", ("python:3.12", [])),
        ("python:${MISSING:-3.11}", ("python:3.11", [])),
        ("python:${TAG:+pinned}", ("python:pinned", [])),
        ("python:$MISSING", ("python:", ["MISSING"])),
        ("cost \\$5", ("cost $5", [])),
    ],
)
def test_build_variable_expansion(text: str, expected: tuple[str, list[str]]) -> None:
    assert expand(text, {"TAG": "3.12"}) == expected


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "RUN echo no FROM\n", "ARG X=1\nUSER root\n"],
    ids=["empty", "comment", "no-from", "instruction-before-from"],
)
def test_not_a_dockerfile_is_a_clear_error(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_dockerfile(text)


def test_global_arg_default_reaches_the_stage_that_redeclares_it() -> None:
    dockerfile = parse_dockerfile("ARG UID=10001\nFROM alpine:3.20\nARG UID\nUSER ${UID}\nHEALTHCHECK CMD true\n")
    assert dockerfile.final.variables["UID"] == "10001"
    assert "CTR-F-001" not in _failing("ARG UID=10001\nFROM alpine:3.20\nARG UID\nUSER ${UID}\n")
    assert "CTR-F-001" in _failing("FROM alpine:3.20\nUSER ${UNSET_UID}\n")


def test_credentials_in_add_urls_and_healthchecks_stay_out_of_findings(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM alpine:3.20\n"
        "ADD https://ci:glpat-tok3n@git.example.com/models.tgz /opt/\n"
        "USER 1000\n"
        "HEALTHCHECK CMD wget -q http://admin:pa55word@127.0.0.1/health\n"
    )
    findings = _scan(dockerfile)
    dump = json.dumps([f.to_dict() for f in findings])
    assert "glpat-tok3n" not in dump and "pa55word" not in dump
    add = next(f for f in findings if f.control_id == "CTR-F-003")
    assert add.evidence.observed == ["ADD https://ci:***@git.example.com/models.tgz /opt/ (line 2)"]
