"""The code scanner: exact bandit hits on fixtures, the lab's seeded code, caching, bad files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from scanners.catalog import default_catalog
from scanners.code import CodeScanStats, scan_code
from scanners.findings import Finding, Severity, Status
from scanners.scanning import ScanContext, ScanRoot
from scanners.source_files import MAX_FILE_BYTES, read_bytes

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "code" / "app"
LAB_APP = ROOT / "scanners" / "lab" / "image" / "files" / "opt" / "montecarlo" / "app"


def run(
    roots: list[ScanRoot],
    cache: Path,
    *,
    workers: int = 1,
    on_emit: Callable[[Finding], None] | None = None,
) -> tuple[list[Finding], CodeScanStats]:
    found: list[Finding] = []

    def emit(finding: Finding) -> None:
        found.append(finding)
        if on_emit is not None:
            on_emit(finding)

    stats = scan_code(ScanContext(default_catalog(), emit), roots, cache_dir=cache, workers=workers)
    return found, stats


def hits(findings: list[Finding]) -> set[tuple[str, str | None, int | None]]:
    return {(f.resource.path or "", f.rule, f.resource.line) for f in findings if f.status is Status.FAIL}


def errors(findings: list[Finding]) -> dict[str, str]:
    return {f.resource.path or "": f.message for f in findings if f.status is Status.ERROR}


FIXTURE_HITS = {
    ("app/insecure.py", "B403", 3),
    ("app/insecure.py", "B404", 4),
    ("app/insecure.py", "B602", 8),
    ("app/insecure.py", "B301", 12),
    ("app/insecure.py", "B307", 16),
    ("app/latin1_cookie.py", "B307", 7),
    ("app/pkg/web.py", "B501", 9),
    ("app/pkg/web.py", "B324", 13),
}


def test_fixture_tree_gives_exactly_the_expected_hits_and_errors(tmp_path: Path) -> None:
    findings, stats = run([ScanRoot(FIXTURES, host="ci", display="app")], tmp_path / "cache")
    assert hits(findings) == FIXTURE_HITS
    problems = errors(findings)
    assert set(problems) == {"app/py2_syntax.py", "app/latin1_no_cookie.py", "app/binary_blob.py"}
    assert "syntax error" in problems["app/py2_syntax.py"]
    assert "not valid UTF-8" in problems["app/latin1_no_cookie.py"]
    assert "binary content" in problems["app/binary_blob.py"]
    # clean.py, suppressed.py (nosec), pkg/__init__.py and notes.txt (not Python) give nothing.
    flagged = {f.resource.path for f in findings}
    assert not flagged & {"app/clean.py", "app/suppressed.py", "app/pkg/__init__.py", "app/notes.txt"}
    assert stats.files == 9 and stats.findings == len(FIXTURE_HITS) and stats.errors == 3
    assert all(f.resource.host == "ci" and f.scanner == "code" for f in findings)


def test_severity_score_cwe_and_rule_come_from_bandit(tmp_path: Path) -> None:
    findings, _ = run([ScanRoot(FIXTURES, display="app")], tmp_path / "cache")
    by_rule = {(f.resource.path, f.rule): f for f in findings if f.status is Status.FAIL}
    shell = by_rule[("app/insecure.py", "B602")]
    assert shell.control_id == "CODE-001"
    assert shell.severity is Severity.HIGH and shell.score == 8.9  # bandit: HIGH severity, HIGH confidence
    assert shell.references["cwe"] == ["CWE-78"]
    assert {"soc2", "iso27001"} <= set(shell.references)
    assert shell.evidence.details["bandit_confidence"] == "HIGH"
    assert shell.evidence.details["more_info"].endswith("b602_subprocess_popen_with_shell_equals_true.html")
    pickle_import = by_rule[("app/insecure.py", "B403")]
    assert pickle_import.severity is Severity.LOW and pickle_import.references["cwe"] == ["CWE-502"]
    assert by_rule[("app/pkg/web.py", "B501")].references["cwe"] == ["CWE-295"]


def test_lab_admin_module_yields_every_seeded_issue(tmp_path: Path) -> None:
    root = ScanRoot(LAB_APP, host="sim-1", display="/opt/montecarlo/app")
    findings, _ = run([root], tmp_path / "cache")
    admin = {(f.rule, f.resource.line) for f in findings if f.resource.path == "/opt/montecarlo/app/admin.py"}
    assert admin == {
        ("B403", 9),  # import pickle
        ("B404", 10),  # import subprocess
        ("B105", 13),  # hard-coded password
        ("B602", 18),  # shell=True with string formatting
        ("B301", 22),  # pickle.loads
        ("B506", 28),  # yaml.load
        ("B324", 32),  # md5
        ("B306", 36),  # tempfile.mktemp
        ("B608", 40),  # SQL built by string formatting
        ("B307", 45),  # eval
        ("B501", 51),  # verify=False
        ("B113", 51),  # no timeout
    }
    # bandit quotes the hard-coded password in its message; a finding must not.
    dumped = json.dumps([f.to_dict() for f in findings])
    assert "montecarlo-admin" not in dumped


def test_unchanged_tree_is_served_from_the_cache(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES, tree)
    cache = tmp_path / "cache"
    cold, cold_stats = run([ScanRoot(tree)], cache, workers=2)
    warm, warm_stats = run([ScanRoot(tree)], cache, workers=2)
    assert cold_stats.analysed == 9 and cold_stats.cached == 0
    assert warm_stats.analysed == 0 and warm_stats.cached == 9
    assert sorted(f.fingerprint for f in warm) == sorted(f.fingerprint for f in cold)
    # One changed file is analysed again, and only that one.
    web = tree / "pkg" / "web.py"
    web.write_text(web.read_text().replace("hashlib.md5(data)", "hashlib.sha256(data)"))
    changed, changed_stats = run([ScanRoot(tree)], cache, workers=2)
    assert changed_stats.analysed == 1 and changed_stats.cached == 8
    assert ("B324" in {f.rule for f in cold}) and ("B324" not in {f.rule for f in changed})


def test_process_pool_and_inline_give_the_same_findings(tmp_path: Path) -> None:
    inline, _ = run([ScanRoot(FIXTURES)], tmp_path / "a", workers=1)
    pooled, stats = run([ScanRoot(FIXTURES)], tmp_path / "b", workers=2)
    assert stats.analysed == 9
    assert sorted(f.fingerprint for f in pooled) == sorted(f.fingerprint for f in inline)


def test_fingerprints_do_not_depend_on_line_numbers(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "pkg", tree)
    before, _ = run([ScanRoot(tree, display="pkg")], tmp_path / "cache")
    web = tree / "web.py"
    web.write_text("# moved down\n\n\n" + web.read_text())
    after, _ = run([ScanRoot(tree, display="pkg")], tmp_path / "cache")
    assert {f.resource.line for f in after} == {f.resource.line + 3 for f in before if f.resource.line}
    assert {f.fingerprint for f in after} == {f.fingerprint for f in before}


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "results.sqlite3").write_bytes(b"this is not a database" * 100)
    findings, stats = run([ScanRoot(FIXTURES / "pkg", display="pkg")], cache)
    assert hits(findings) == {("pkg/web.py", "B501", 9), ("pkg/web.py", "B324", 13)}
    _, again = run([ScanRoot(FIXTURES / "pkg", display="pkg")], cache)
    assert again.cached == stats.files == 2


def _bad_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "bad"
    tree.mkdir()
    (tree / "good.py").write_text("import pickle\n")
    os.mkfifo(tree / "fifo.py")
    (tree / "self_loop.py").symlink_to("self_loop.py")
    (tree / "dangling.py").symlink_to("does-not-exist.py")
    (tree / "sub").mkdir()
    (tree / "sub" / "back").symlink_to("..")
    with (tree / "huge.py").open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written, nothing must be read
    (tree / "zz_vanishes.py").write_text("import pickle\n")
    return tree


def test_every_unreadable_file_is_one_error_finding_and_the_rest_is_scanned(tmp_path: Path) -> None:
    tree = _bad_tree(tmp_path)

    def remove_later_file(finding: Finding) -> None:
        # The walk has listed the directory; the file disappears before it is read.
        if finding.resource.path and finding.resource.path.endswith("fifo.py"):
            (tree / "zz_vanishes.py").unlink()

    findings, stats = run([ScanRoot(tree, display="bad")], tmp_path / "cache", on_emit=remove_later_file)
    problems = errors(findings)
    assert set(problems) == {
        "bad/fifo.py",
        "bad/self_loop.py",
        "bad/dangling.py",
        "bad/sub/back",
        "bad/huge.py",
        "bad/zz_vanishes.py",
    }
    assert "FIFO" in problems["bad/fifo.py"]
    assert "symbolic link loop" in problems["bad/self_loop.py"]
    assert "symbolic link loop" in problems["bad/sub/back"]
    assert "broken symbolic link" in problems["bad/dangling.py"]
    assert "over the 100 MB limit" in problems["bad/huge.py"]
    assert "vanished" in problems["bad/zz_vanishes.py"]
    assert all(f.control_id == "SCAN-001" for f in findings if f.status is Status.ERROR)
    assert hits(findings) == {("bad/good.py", "B403", 1)}
    assert stats.errors == 6


def test_reading_a_file_that_was_removed_after_listing_says_so(tmp_path: Path) -> None:
    path = tmp_path / "gone.py"
    path.write_text("x = 1\n")
    path.unlink()
    assert read_bytes(path) == "vanished during the scan (or is a broken symbolic link); not read"
    (tmp_path / "dir.py").mkdir()
    assert read_bytes(tmp_path / "dir.py") == "is a directory where a file was expected; not read"


def test_a_missing_root_is_an_error_finding(tmp_path: Path) -> None:
    findings, _ = run([ScanRoot(tmp_path / "nope", display="nope"), ScanRoot(FIXTURES / "pkg")], tmp_path / "c")
    assert errors(findings) == {
        "nope": "nope: scan root vanished during the scan (or is a broken symbolic link); not read"
    }
    assert {f.rule for f in findings if f.status is Status.FAIL} == {"B501", "B324"}


def test_a_cancelled_scan_stops_without_findings(tmp_path: Path) -> None:
    found: list[Finding] = []
    cancelled = threading.Event()
    cancelled.set()
    ctx = ScanContext(default_catalog(), found.append, cancelled=cancelled)
    stats = scan_code(ctx, [ScanRoot(FIXTURES)], cache_dir=tmp_path / "cache", workers=2)
    assert found == [] and stats.analysed == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_findings_fit_the_findings_schema(tmp_path: Path, workers: int) -> None:
    from scanners.findings_file import new_document, validate_document

    findings, _ = run([ScanRoot(FIXTURES, host="ci", display="app")], tmp_path / "cache", workers=workers)
    document = new_document(default_catalog(), scanners=["code"])
    document.findings.extend(findings)
    validate_document(document.to_dict())


def test_identical_hits_in_one_file_keep_distinct_fingerprints(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "twice.py").write_text("def a(x):\n    return eval(x)\n\n\ndef b(x):\n    return eval(x)\n")
    findings, _ = run([ScanRoot(tree)], tmp_path / "cache")
    assert sorted(f.resource.line or 0 for f in findings) == [2, 6]
    assert len({f.fingerprint for f in findings}) == 2


def test_workers_that_cannot_start_fall_back_to_scanning_in_process(tmp_path: Path) -> None:
    # A caller's script without a __main__ guard: forkserver workers cannot start from it.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from scanners.catalog import default_catalog\n"
        "from scanners.code import scan_code\n"
        "from scanners.scanning import ScanContext, ScanRoot\n"
        "found = []\n"
        "ctx = ScanContext(default_catalog(), found.append)\n"
        "roots = [ScanRoot(Path(sys.argv[1]), display='app')]\n"
        "scan_code(ctx, roots, cache_dir=Path(sys.argv[2]), workers=2)\n"
        "print(sorted((f.resource.path, f.rule, f.resource.line) for f in found if f.rule))\n"
    )
    result = subprocess.run(
        [sys.executable, str(script), str(FIXTURES), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(sorted(FIXTURE_HITS))
