"""The offline vulnerability database: import (dir, tarball, OSV zip), atomicity, lookups, CLI."""

from __future__ import annotations

import http.server
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from scanners import vulndb
from scanners.errors import EnvironmentProblem, InputError

ROOT = Path(__file__).resolve().parents[2]
ADVISORIES = ROOT / "tests" / "data" / "advisories"
PREAUDIT = str(Path(sys.executable).parent / "preaudit")
FIXTURE_RECORDS = sorted(ADVISORIES.glob("vulns/*/*.yaml"))


def _tarball(tmp_path: Path, name: str = "pypa-advisory-database-3ccb612.tar.gz") -> Path:
    """The fixture advisories laid out as GitHub's archive of the repository."""
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as archive:
        archive.add(ADVISORIES, arcname="advisory-database")
        workflow = b"name: not an advisory\non: push\n"
        info = tarfile.TarInfo("advisory-database/.github/workflows/ci.yaml")
        info.size = len(workflow)
        archive.addfile(info, io.BytesIO(workflow))
    return path


def _osv_zip(tmp_path: Path) -> Path:
    """The fixture advisories as osv.dev's PyPI export: one OSV JSON file per advisory."""
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for record_path in FIXTURE_RECORDS:
            record = yaml.safe_load(record_path.read_text())
            archive.writestr(f"{record['id']}.json", json.dumps(record, default=str))
    return path


def test_import_directory_records_metadata(tmp_path: Path) -> None:
    info = vulndb.import_snapshot(ADVISORIES, tmp_path / "db")
    assert info.kind == "pypa-advisory-database"
    assert info.advisories == len(FIXTURE_RECORDS) == 43
    assert info.packages == 7
    assert info.date == "2024-02-17T07:18:27.688636Z"  # the newest `modified` of these advisories
    assert (tmp_path / "db" / "osv.sqlite3").is_file()
    assert vulndb.status(tmp_path / "db") == info


def test_import_tarball_takes_the_commit_from_its_name_and_ignores_other_yaml(tmp_path: Path) -> None:
    info = vulndb.import_snapshot(_tarball(tmp_path), tmp_path / "db")
    assert (info.kind, info.commit, info.advisories) == ("pypa-advisory-database", "3ccb612", 43)
    assert info.source == "pypa-advisory-database-3ccb612.tar.gz"


def test_import_osv_zip_export(tmp_path: Path) -> None:
    info = vulndb.import_snapshot(_osv_zip(tmp_path), tmp_path / "db")
    assert (info.kind, info.advisories, info.packages) == ("osv-export", 43, 7)
    with vulndb.open_vulndb(tmp_path / "db") as db:
        assert [a.id for a in db.affecting("PyYAML", Version("5.3"))] == ["PYSEC-2020-96", "PYSEC-2021-142"]


def test_lookup_uses_normalised_names_ranges_and_fixed_versions(tmp_path: Path) -> None:
    vulndb.import_snapshot(ADVISORIES, tmp_path / "db")
    with vulndb.open_vulndb(tmp_path / "db") as db:
        jinja = db.affecting("Jinja2", Version("2.10"))
        assert [a.id for a in jinja] == ["PYSEC-2019-217", "PYSEC-2021-66"]
        assert jinja[0].fixed == ("2.10.1",) and jinja[0].cves == ["CVE-2019-10906"]
        assert [a.id for a in db.affecting("jinja2", Version("2.10"))] == [a.id for a in jinja]
        assert db.affecting("requests", Version("2.32.3")) == []
        assert db.affecting("no-such-package", Version("1.0")) == []
        # Two separate ranges: 1.26.17 fixes the 1.x line, 2.0.6 the 2.x line.
        (cookie,) = [a for a in db.affecting("urllib3", Version("2.0.5")) if a.id == "PYSEC-2023-192"]
        assert cookie.fixed == ("2.0.6",)


def _write_record(directory: Path, record: dict[str, object]) -> None:
    (directory / f"{record['id']}.json").write_text(json.dumps(record))


def _affected(*ranges: dict[str, object], versions: list[str] | None = None, name: str = "demo") -> dict[str, object]:
    return {"package": {"ecosystem": "PyPI", "name": name}, "ranges": list(ranges), "versions": versions or []}


def test_osv_range_semantics(tmp_path: Path) -> None:
    source = tmp_path / "osv"
    source.mkdir()
    eco = "ECOSYSTEM"
    _write_record(
        source,
        {
            "id": "DEMO-1",
            "affected": [
                _affected(
                    {
                        "type": eco,
                        "events": [{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"}, {"fixed": "2.3"}],
                    }
                )
            ],
        },
    )
    _write_record(
        source,
        {
            "id": "DEMO-2",
            "affected": [_affected({"type": eco, "events": [{"introduced": "0"}, {"last_affected": "0.9"}]})],
        },
    )
    _write_record(source, {"id": "DEMO-3", "affected": [_affected(versions=["3.1"])]})
    _write_record(
        source,
        {
            "id": "DEMO-4",
            "affected": [_affected({"type": "GIT", "repo": "x", "events": [{"introduced": "0"}, {"fixed": "abc"}]})],
        },
    )
    _write_record(
        source, {"id": "DEMO-5", "withdrawn": "2024-01-01T00:00:00Z", "affected": [_affected(versions=["1.2"])]}
    )
    _write_record(
        source, {"id": "NPM-1", "affected": [{"package": {"ecosystem": "npm", "name": "demo"}, "versions": ["1.2"]}]}
    )
    info = vulndb.import_snapshot(source, tmp_path / "db")
    assert (info.kind, info.advisories) == ("osv-directory", 4)  # withdrawn and npm-only records are left out
    expected = {
        "0.5": ["DEMO-2"],
        "0.9": ["DEMO-2"],
        "0.9.1": [],
        "1.0": ["DEMO-1"],
        "1.4.9": ["DEMO-1"],
        "1.5": [],
        "1.9": [],
        "2.0rc1": [],
        "2.2": ["DEMO-1"],
        "2.3": [],
        "3.1": ["DEMO-3"],
    }
    with vulndb.open_vulndb(tmp_path / "db") as db:
        assert {v: [a.id for a in db.affecting("Demo", Version(v))] for v in expected} == expected
        (first,) = db.affecting("demo", Version("1.2"))
        assert first.fixed == ("1.5", "2.3")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-yaml", "no-id", "empty"])
def test_a_bad_source_is_refused_and_the_old_database_kept(tmp_path: Path, damage: str) -> None:
    location = tmp_path / "db"
    before = vulndb.import_snapshot(ADVISORIES, location)
    bad = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        bad.write_bytes(_tarball(tmp_path).read_bytes()[:20000])
        message = "not a readable tar archive"
    elif damage == "garbage":
        bad.write_bytes(b"this is not an archive at all\n" * 50)
        message = "not a readable tar archive"
    else:
        content = {"bad-yaml": b"id: [unclosed\n", "no-id": b"summary: no id here\n", "empty": None}[damage]
        with tarfile.open(bad, "w:gz") as archive:
            if content is not None:
                info = tarfile.TarInfo("db/vulns/demo/PYSEC-0000-1.yaml")
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        message = {
            "bad-yaml": "advisory db/vulns/demo/PYSEC-0000-1.yaml is not valid YAML",
            "no-id": "is not an OSV record",
            "empty": "holds no OSV advisory",
        }[damage]
    with pytest.raises(InputError, match=message):
        vulndb.import_snapshot(bad, location)
    assert vulndb.status(location) == before
    assert sorted(p.name for p in location.iterdir()) == ["osv.sqlite3"]  # no temporary file left


def test_missing_or_corrupt_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(vulndb.VulnDbError, match="no vulnerability database"):
        vulndb.open_vulndb(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "osv.sqlite3").write_bytes(b"garbage" * 1000)
    with pytest.raises(vulndb.VulnDbError, match="is corrupt"):
        vulndb.open_vulndb(tmp_path / "bad")


def test_default_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vulndb.VULNDB_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert vulndb.database_file() == tmp_path / "data" / "preaudit" / "vulndb" / "osv.sqlite3"
    monkeypatch.setenv(vulndb.VULNDB_ENV, str(tmp_path / "elsewhere"))
    assert vulndb.database_file() == tmp_path / "elsewhere" / "osv.sqlite3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving an OSV export, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    _osv_zip(served)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/all.zip"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_sync_downloads_and_imports(tmp_path: Path, export_server: str) -> None:
    info = vulndb.sync(tmp_path / "db", url=export_server, timeout=10)
    assert (info.kind, info.advisories, info.source) == ("osv-export", 43, export_server)
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["osv.sqlite3"]


def test_sync_offline_is_a_clear_environment_problem(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem, match=r"cannot download the vulnerability database .* offline"):
        vulndb.sync(tmp_path / "db", url=f"http://127.0.0.1:{_free_port()}/all.zip", timeout=5)
    assert not (tmp_path / "db" / "osv.sqlite3").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREAUDIT, "vulndb", *args], capture_output=True, text=True, check=False)


def test_cli_import_status_and_errors(tmp_path: Path) -> None:
    location = str(tmp_path / "db")
    missing = _cli("status", "--vuln-db", location)
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1 and "no vulnerability database" in missing.stderr
    imported = _cli("import", str(_tarball(tmp_path)), "--vuln-db", location)
    assert imported.returncode == 0, imported.stderr
    assert "pypa-advisory-database pypa-advisory-database-3ccb612.tar.gz at 3ccb612 (43 advisories" in imported.stdout
    status = _cli("status", "--vuln-db", location, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["commit"] == "3ccb612"
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b garbage")
    refused = _cli("import", str(garbage), "--vuln-db", location)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "garbage.tar.gz: not a readable tar archive" in refused.stderr
    offline = _cli("sync", "--vuln-db", location, "--url", f"http://127.0.0.1:{_free_port()}/all.zip", "--timeout", "5")
    assert offline.returncode == 3 and offline.stderr.count("\n") == 1 and "offline?" in offline.stderr
    assert json.loads(_cli("status", "--vuln-db", location, "--json").stdout)["commit"] == "3ccb612"
