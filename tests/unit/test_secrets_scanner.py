"""The secrets scanner: exact detections on fixtures, allowlist, baseline, salt, and no leaks ever."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import string
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.errors import InputError
from scanners.findings import Finding, Severity, Status
from scanners.scanning import ScanContext, ScanRoot
from scanners.secret_salt import SALT_ENV, load_salt
from scanners.secrets import SecretsScanStats, scan_secrets

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "code" / "secrets"
BASELINE = ROOT / "tests" / "data" / "code" / "secrets.baseline"
LAB = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo"


@pytest.fixture(autouse=True)
def _isolated_salt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SALT_ENV, "unit-test-salt-0123456789abcdef")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def run(
    roots: list[ScanRoot], cache: Path, *, baseline: Path | None = None, workers: int = 1
) -> tuple[list[Finding], SecretsScanStats]:
    found: list[Finding] = []
    stats = scan_secrets(
        ScanContext(default_catalog(), found.append), roots, baseline=baseline, workers=workers, cache_dir=cache
    )
    return found, stats


def detections(findings: list[Finding]) -> set[tuple[str, str | None, int | None]]:
    return {(f.resource.path or "", f.rule, f.resource.line) for f in findings if f.status is Status.FAIL}


FIXTURE_SECRETS = {
    ("fx/config/settings.py", "AWS Access Key", 3),
    ("fx/config/settings.py", "GitHub Token", 4),
    ("fx/config/settings.py", "Slack Token", 5),
    ("fx/config/settings.py", "JSON Web Token", 6),
    ("fx/config/settings.py", "Secret Keyword", 7),
    ("fx/config/app.env", "Database URL with password", 2),
    ("fx/config/app.env", "Secret Keyword", 3),
    ("fx/config/app.env", "IBM Cloud IAM Key", 3),
    ("fx/keys/fake_deploy_key.pem", "Private Key", 1),
    ("fx/baselined.yml", "Secret Keyword", 3),
}


def test_fixture_tree_gives_exactly_the_expected_secrets(tmp_path: Path) -> None:
    findings, stats = run([ScanRoot(FIXTURES, host="ci", display="fx")], tmp_path / "cache")
    assert detections(findings) == FIXTURE_SECRETS
    problems = {f.resource.path: f.message for f in findings if f.status is Status.ERROR}
    assert problems == {
        "fx/blob.dat": "fx/blob.dat: binary content; not scanned for secrets",
        "fx/latin1.conf": "fx/latin1.conf: not valid UTF-8 text; not scanned for secrets",
    }
    # The allowlisted line, the clean file and the README give nothing; the PNG is skipped by
    # detect-secrets' own file-type filter.
    flagged = {f.resource.path for f in findings}
    assert not flagged & {"fx/allowlisted.py", "fx/clean.py", "fx/README.md", "fx/logo.png"}
    assert stats.skipped == 1 and stats.findings == len(FIXTURE_SECRETS) and stats.errors == 2
    by_rule = {f.rule: f for f in findings if f.status is Status.FAIL}
    assert by_rule["Private Key"].severity is Severity.CRITICAL
    assert by_rule["AWS Access Key"].severity is Severity.HIGH
    assert by_rule["Secret Keyword"].severity is Severity.MEDIUM
    assert all(f.control_id == "SEC-101" for f in findings if f.status is Status.FAIL)


def test_baseline_hides_known_secrets_only(tmp_path: Path) -> None:
    findings, stats = run([ScanRoot(FIXTURES, display="fx")], tmp_path / "cache", baseline=BASELINE)
    assert detections(findings) == FIXTURE_SECRETS - {("fx/baselined.yml", "Secret Keyword", 3)}
    assert stats.baselined == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"version": "1.5.0"}', "no 'results' mapping"),
        ('{"results": {"a.py": [{"type": "Secret Keyword"}]}}', "lacks 'type' or 'hashed_secret'"),
    ],
)
def test_a_bad_baseline_is_a_one_line_input_error(tmp_path: Path, content: str, message: str) -> None:
    baseline = tmp_path / "bad.baseline"
    baseline.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        run([ScanRoot(FIXTURES)], tmp_path / "cache", baseline=baseline)
    assert "\n" not in str(caught.value)


def test_lab_env_file_yields_the_database_password_and_the_api_key(tmp_path: Path) -> None:
    findings, _ = run([ScanRoot(LAB, host="sim-1", display="/opt/montecarlo")], tmp_path / "cache")
    env = {(f.rule, f.resource.line) for f in findings if f.resource.path == "/opt/montecarlo/.env"}
    assert env == {
        ("Database URL with password", 3),  # DATABASE_URL=postgresql://montecarlo:...@db...
        ("Secret Keyword", 4),  # JWT_SECRET=changeme
        ("Secret Keyword", 5),  # API_KEY=mc_lab_...
    }
    dumped = json.dumps([f.to_dict() for f in findings])
    for lab_secret in ("Sim-Lab-Passw0rd-7731", "mc_lab_4f8a2c91d7e35b60a1f9c8e2d4b7a613", "montecarlo-admin"):
        assert lab_secret not in dumped


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def test_canary_secrets_never_appear_in_findings_output_or_cache(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    canaries = {
        "aws": "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
        "db": "Cn" + _random(string.ascii_letters + string.digits, 18),
        "password": "Pw" + _random(string.ascii_letters + string.digits, 22),  # pragma: allowlist secret
        "key": _random(string.ascii_letters + string.digits, 40),
    }
    tree = tmp_path / "tree"
    tree.mkdir()
    settings = f'AWS_KEY = "{canaries["aws"]}"\nADMIN_PASSWORD = "{canaries["password"]}"\n'  # pragma: allowlist secret
    (tree / "settings.py").write_text(settings)
    (tree / "service.env").write_text(f"DATABASE_URL=mysql://app:{canaries['db']}@db.invalid/app\n")
    header = "-----BEGIN OPENSSH PRIVATE KEY-----"  # pragma: allowlist secret
    (tree / "deploy.pem").write_text(f"{header}\n{canaries['key']}\n-----END OPENSSH PRIVATE KEY-----\n")
    cache = tmp_path / "cache"
    findings, _ = run([ScanRoot(tree, display="t")], cache, workers=2)
    again, _ = run([ScanRoot(tree, display="t")], cache, workers=2)  # from the cache this time
    # A random password may also pass the high-entropy threshold; these four must be there.
    assert {f.rule for f in findings} >= {
        "AWS Access Key",
        "Secret Keyword",
        "Database URL with password",
        "Private Key",
    }
    captured = capfd.readouterr()
    haystacks = [
        json.dumps([f.to_dict() for f in findings + again]),
        "\n".join(f.resource.label() + f.title + f.message for f in findings),
        captured.out,
        captured.err,
    ]
    haystacks += [p.read_bytes().decode("latin-1") for p in cache.rglob("*") if p.is_file()]
    for name, canary in canaries.items():
        unsalted = hashlib.sha1(canary.encode()).hexdigest()
        for haystack in haystacks:
            assert canary not in haystack, f"canary {name} leaked"
            assert canary[4:14] not in haystack, f"part of canary {name} leaked"
            assert unsalted not in haystack, f"unsalted hash of canary {name} leaked"


def test_salt_is_created_once_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV)
    first = load_salt()
    path = tmp_path / "config" / "preaudit" / "secret-salt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_salt() == first and len(first) >= 32
    path.chmod(0o644)
    assert load_salt() == first and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_short_salt_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, "short")
    with pytest.raises(InputError, match="at least 16 characters"):
        load_salt()


def test_fingerprints_are_stable_per_salt_and_differ_across_salts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "config", tree)
    first, _ = run([ScanRoot(tree)], tmp_path / "c1")
    (tree / "settings.py").write_text("\n\n" + (tree / "settings.py").read_text())
    moved, _ = run([ScanRoot(tree)], tmp_path / "c2")
    assert {f.fingerprint for f in moved} == {f.fingerprint for f in first}
    monkeypatch.setenv(SALT_ENV, "another-salt-for-another-installation")
    other, _ = run([ScanRoot(tree)], tmp_path / "c1")
    assert not {f.fingerprint for f in other} & {f.fingerprint for f in first}
    assert {f.evidence.details["salted_hash"] for f in other}.isdisjoint(
        {f.evidence.details["salted_hash"] for f in first}
    )


def test_unchanged_files_come_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold, cold_stats = run([ScanRoot(FIXTURES, display="fx")], cache, workers=2)
    warm, warm_stats = run([ScanRoot(FIXTURES, display="fx")], cache, workers=2)
    assert cold_stats.analysed == 10 and warm_stats.analysed == 0 and warm_stats.cached == 10
    assert sorted(f.fingerprint for f in warm) == sorted(f.fingerprint for f in cold)


def test_unreadable_entries_are_error_findings_and_the_rest_is_scanned(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(FIXTURES / "config" / "app.env", tree / "app.env")
    os.mkfifo(tree / "pipe.env")
    (tree / "loop.conf").symlink_to("loop.conf")
    findings, _ = run([ScanRoot(tree, display="t")], tmp_path / "cache")
    problems = {f.resource.path: f.message for f in findings if f.status is Status.ERROR}
    assert set(problems) == {"t/pipe.env", "t/loop.conf"}
    assert "FIFO" in problems["t/pipe.env"] and "symbolic link loop" in problems["t/loop.conf"]
    assert {f.rule for f in findings if f.status is Status.FAIL} == {
        "Database URL with password",
        "Secret Keyword",
        "IBM Cloud IAM Key",
    }


def test_our_own_repository_is_clean_outside_test_data(tmp_path: Path) -> None:
    baseline = ROOT / ".secrets.baseline"
    findings, _ = run([ScanRoot(ROOT, display=".")], tmp_path / "cache", baseline=baseline, workers=2)
    outside = [
        f.resource.label()
        for f in findings
        if f.status is Status.FAIL and not (f.resource.path or "").startswith("tests/data/")
    ]
    assert outside == []


def test_the_same_secret_twice_in_one_file_is_two_findings(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(FIXTURES / "keys" / "fake_deploy_key.pem", tree / "a.pem")
    (tree / "a.pem").write_text((tree / "a.pem").read_text() * 2)
    findings, _ = run([ScanRoot(tree)], tmp_path / "cache")
    assert sorted((f.rule, f.resource.line) for f in findings) == [("Private Key", 1), ("Private Key", 4)]
    assert len({f.fingerprint for f in findings}) == 2


def test_the_line_scanner_finds_exactly_what_detect_secrets_finds() -> None:
    from detect_secrets.core import scan as ds_scan

    from scanners import secrets as secrets_module
    from scanners.secret_lines import LineScanner

    secrets_module._init_worker(b"unit-test-salt-0123456789abcdef")
    scanner = LineScanner()
    files = [p for p in FIXTURES.rglob("*") if p.is_file()] + [p for p in LAB.rglob("*") if p.is_file()]
    files += (
        sorted((ROOT / "scanners").rglob("*.py"))
        + sorted((ROOT / "tests" / "data" / "advisories").rglob("*.yaml"))[:10]
    )
    total = 0
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        for lines in secrets_module._line_sets(str(path), text):
            ours = {(s.type, s.line_number, s.secret_hash) for s in scanner.scan(lines, str(path))}
            theirs = {
                (s.type, s.line_number, s.secret_hash)
                for s in ds_scan._process_line_based_plugins(list(enumerate(lines, start=1)), filename=str(path))
            }
            assert ours == theirs, path
            total += len(ours)
    assert total >= 20  # the comparison covered real detections, not just empty files
