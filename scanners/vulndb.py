"""The offline vulnerability database: OSV advisories for PyPI, imported once, looked up by package.

Sources: the PyPA advisory database (a ``git archive`` tarball or an extracted checkout, OSV
YAML under ``vulns/<package>/``) or an OSV export (osv.dev's ``PyPI/all.zip``, OSV JSON). An
import reads and validates every record first and writes a new SQLite file beside the old one,
renaming it into place only when complete: a corrupt source leaves the previous database as it
was, never half of a new one. Lookups go by PEP 503 normalised package name.

Location: ``--vuln-db``, else ``$PREAUDIT_VULNDB``, else ``$XDG_DATA_HOME/preaudit/vulndb``
(a directory holding ``osv.sqlite3``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from scanners.errors import EnvironmentProblem, InputError, PreauditError
from scanners.findings import format_timestamp, utcnow

SCHEMA = "preaudit-vulndb/1"
DB_FILE = "osv.sqlite3"
VULNDB_ENV = "PREAUDIT_VULNDB"
OSV_PYPI_EXPORT_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
# One advisory is a few kB; anything this large is not an advisory (or is a decompression bomb).
MAX_RECORD_BYTES = 8 * 1024 * 1024
_RECORD_SUFFIXES = (".yaml", ".yml", ".json")
_COMMIT_IN_NAME = re.compile(r"-([0-9a-f]{7,40})(?:\.tar\.gz|\.tgz|\.tar|\.zip)$")
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class VulnDbError(PreauditError):
    """The database is missing or unusable; a scan must say so, never report zero advisories."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """Which advisories a scan used: what auditors need to judge a '0 vulnerabilities'."""

    source: str
    kind: str
    commit: str | None
    date: str | None
    advisories: int
    packages: int
    imported_at: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        at = f" at {self.commit}" if self.commit else ""
        when = f", newest advisory {self.date}" if self.date else ""
        return f"{self.kind} {self.source}{at} ({self.advisories} advisories{when})"


@dataclass(frozen=True, slots=True)
class Advisory:
    """One advisory as it applies to one package."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]
    published: str | None
    modified: str | None
    severity: str | None

    @property
    def cves(self) -> list[str]:
        return sorted({a for a in (self.id, *self.aliases) if a.startswith("CVE-")})


def default_location() -> Path:
    from_env = os.environ.get(VULNDB_ENV)
    if from_env:
        return Path(from_env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "preaudit" / "vulndb"


def database_file(location: Path | None = None) -> Path:
    """The SQLite file for a location that is either that file or the directory holding it."""
    location = location or default_location()
    if location.suffix in (".sqlite3", ".sqlite", ".db") or location.is_file():
        return location
    return location / DB_FILE


# --- reading sources ------------------------------------------------------------------------


def _json_default(value: object) -> str:
    # An unquoted timestamp in OSV YAML loads as a datetime; OSV itself says RFC 3339 text.
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"unexpected {type(value).__name__} in an advisory")


def _parse_record(name: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if name.endswith(".json") else yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except UnicodeDecodeError:
        raise InputError(f"advisory {name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"advisory {name} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"advisory {name} is not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise InputError(f"advisory {name} is not an OSV record (no 'id')")
    for key in ("modified", "published", "withdrawn"):
        if isinstance(data.get(key), date):
            data[key] = _json_default(data[key])
    affected = data.get("affected", [])
    if not isinstance(affected, list) or not all(isinstance(a, dict) for a in affected):
        raise InputError(f"advisory {name} ({data['id']}): 'affected' must be a list of mappings")
    return data


def _is_advisory_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return name.endswith(_RECORD_SUFFIXES) and not any(p.startswith(".") for p in parts)


def _pick_vulns(names: list[str]) -> list[str]:
    # The PyPA repository also holds workflow and schema YAML; its advisories live under vulns/.
    under_vulns = [n for n in names if "vulns" in PurePosixPath(n).parts]
    return under_vulns or names


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _records_from_tar(path: Path) -> tuple[Iterator[tuple[str, bytes]], str | None]:
    members: list[tuple[str, bytes]] = []
    commit = None
    try:
        with tarfile.open(path, "r:*") as archive:
            comment = archive.pax_headers.get("comment", "")
            if re.fullmatch(r"[0-9a-f]{40}", comment):
                commit = comment  # git archive records the commit here
            for member in archive:
                if not member.isfile() or not _is_advisory_name(member.name):
                    continue
                if member.size > MAX_RECORD_BYTES:
                    raise InputError(f"{path.name}: member {member.name} is {member.size} bytes; not an advisory")
                handle = archive.extractfile(member)
                if handle is not None:
                    members.append((member.name, handle.read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, tarfile.ReadError) and "could not be opened successfully" in str(exc):
            # tarfile lists every compression it tried, one per line; the user needs one line.
            raise InputError(f"{path.name}: not a readable tar archive (nor gzip, bzip2 or xz compressed)") from None
        raise InputError(f"{path.name}: not a readable tar archive ({_one_line(exc)})") from None
    wanted = set(_pick_vulns([n for n, _ in members]))
    return ((n, raw) for n, raw in members if n in wanted), commit


def _records_from_zip(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir() and _is_advisory_name(i.filename)]
            wanted = set(_pick_vulns([i.filename for i in infos]))
            for info in infos:
                if info.filename not in wanted:
                    continue
                if info.file_size > MAX_RECORD_BYTES:
                    raise InputError(f"{path.name}: member {info.filename} is {info.file_size} bytes; not an advisory")
                yield info.filename, archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise InputError(f"{path.name}: not a readable zip archive ({_one_line(exc)})") from None


def _git_commit(directory: Path) -> str | None:
    head = directory / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (directory / ".git" / ref[5:]).read_text().strip()
    except OSError:
        return None
    return ref or None


def _records_from_dir(directory: Path) -> Iterator[tuple[str, bytes]]:
    base = directory / "vulns" if (directory / "vulns").is_dir() else directory
    for path in sorted(base.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_file() and _is_advisory_name(name):
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise InputError(f"{name} is {path.stat().st_size} bytes; not an advisory")
            try:
                yield name, path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read advisory {name}: {exc.strerror or exc}") from None


def _open_source(source: Path) -> tuple[Iterator[tuple[str, bytes]], str, str | None]:
    """(records, kind, commit) for a directory, tar archive or zip archive."""
    if source.is_dir():
        kind = "pypa-advisory-database" if (source / "vulns").is_dir() else "osv-directory"
        return _records_from_dir(source), kind, _git_commit(source)
    if not source.is_file():
        raise InputError(f"{source}: no such file or directory")
    name_commit = _COMMIT_IN_NAME.search(source.name)
    commit = name_commit.group(1) if name_commit else None
    with source.open("rb") as handle:
        magic = handle.read(4)
    if magic.startswith(b"PK"):
        return _records_from_zip(source), "osv-export", commit
    records, tar_commit = _records_from_tar(source)
    return records, "pypa-advisory-database", tar_commit or commit


# --- importing ------------------------------------------------------------------------------


def _pypi_packages(record: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for affected in record.get("affected", []):
        package = affected.get("package") or {}
        if isinstance(package, dict) and package.get("ecosystem") == "PyPI" and isinstance(package.get("name"), str):
            names.add(canonicalize_name(package["name"]))
    return names


_SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE advisories (id TEXT PRIMARY KEY, modified TEXT, record TEXT NOT NULL);
CREATE TABLE affects (package TEXT NOT NULL, advisory_id TEXT NOT NULL, PRIMARY KEY (package, advisory_id));
"""


def import_snapshot(source: Path, location: Path | None = None, *, origin: str | None = None) -> SnapshotInfo:
    """Validate ``source`` and make it the database at ``location``, atomically.

    Raises InputError (naming the bad file) when the source is not a readable advisory
    database; the existing database is then left untouched.
    """
    target = database_file(location)
    records, kind, commit = _open_source(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(_SCHEMA_SQL)
            newest = ""
            count = 0
            for name, raw in records:
                record = _parse_record(name, raw)
                packages = _pypi_packages(record)
                if not packages or record.get("withdrawn"):
                    continue
                modified = str(record.get("modified") or "")
                newest = max(newest, modified)
                db.execute(
                    "INSERT OR REPLACE INTO advisories (id, modified, record) VALUES (?, ?, ?)",
                    (record["id"], modified, json.dumps(record, default=_json_default, separators=(",", ":"))),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO affects (package, advisory_id) VALUES (?, ?)",
                    [(p, record["id"]) for p in sorted(packages)],
                )
                count += 1
            if count == 0:
                raise InputError(f"{source.name}: holds no OSV advisory for a PyPI package")
            advisories = db.execute("SELECT COUNT(*) FROM advisories").fetchone()[0]
            packages_count = db.execute("SELECT COUNT(DISTINCT package) FROM affects").fetchone()[0]
            info = SnapshotInfo(
                source=origin or source.name,
                kind=kind,
                commit=commit,
                date=newest or None,
                advisories=int(advisories),
                packages=int(packages_count),
                imported_at=format_timestamp(utcnow()),
                path=str(target),
            )
            meta = {k: v for k, v in info.to_dict().items() if k != "path"}
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema", SCHEMA), *((k, json.dumps(v)) for k, v in meta.items())],
            )
            db.commit()
        finally:
            db.close()
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def sync(location: Path | None = None, *, url: str = OSV_PYPI_EXPORT_URL, timeout: float = 60.0) -> SnapshotInfo:
    """Download the current OSV PyPI export and import it. Offline: EnvironmentProblem (exit 3)."""
    if not url.startswith(("https://", "http://")):
        raise InputError(f"vulnerability database URL must be http(s), not {url!r}")
    target = database_file(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", suffix=".zip", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise EnvironmentProblem(
                    f"cannot download the vulnerability database from {url} ({reason}); offline? "
                    "Import a snapshot with `preaudit vulndb import FILE` instead"
                ) from None
        return import_snapshot(tmp, location, origin=url)
    finally:
        tmp.unlink(missing_ok=True)


# --- looking up -----------------------------------------------------------------------------


def _version(raw: object) -> Version | None:
    try:
        return Version(str(raw))
    except InvalidVersion:
        return None


_EVENT_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}


def _in_range(events: list[Any], version: Version) -> bool:
    """OSV range semantics: sorted events switch 'affected' on (introduced) and off (fixed, ...)."""
    points: list[tuple[Version, int, str]] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        for kind, order in _EVENT_ORDER.items():
            if kind in event:
                point = Version("0") if (kind == "introduced" and str(event[kind]) == "0") else _version(event[kind])
                if point is not None:
                    points.append((point, order, kind))
    affected = False
    for point, _, kind in sorted(points):
        if kind == "introduced" and version >= point:
            affected = True
        elif (kind in ("fixed", "limit") and version >= point) or (kind == "last_affected" and version > point):
            affected = False
    return affected


def _affects(entry: dict[str, Any], version: Version) -> bool:
    for listed in entry.get("versions") or []:
        if str(listed) == str(version) or _version(listed) == version:
            return True
    for rng in entry.get("ranges") or []:
        # GIT ranges name commits, which a package version cannot be compared with.
        if (
            isinstance(rng, dict)
            and rng.get("type") in ("ECOSYSTEM", "SEMVER")
            and _in_range(rng.get("events") or [], version)
        ):
            return True
    return False


def _fixed_versions(entry: dict[str, Any], version: Version) -> list[Version]:
    fixed = []
    for rng in entry.get("ranges") or []:
        for event in (rng.get("events") or []) if isinstance(rng, dict) else []:
            if isinstance(event, dict) and "fixed" in event:
                parsed = _version(event["fixed"])
                if parsed is not None and parsed > version:
                    fixed.append(parsed)
    return fixed


def _summary(record: dict[str, Any]) -> str:
    text = str(record.get("summary") or record.get("details") or "no description").strip()
    first = " ".join(text.split())
    return first if len(first) <= 300 else first[:297] + "..."


class VulnDb:
    """An open database; one per thread (SQLite connections are not shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise VulnDbError(
                f"no vulnerability database at {path}; run `preaudit vulndb import FILE|DIR` or `preaudit vulndb sync`"
            )
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise VulnDbError(f"vulnerability database {path} is corrupt ({exc}); import it again") from None
        if meta.get("schema") != SCHEMA:
            self._db.close()
            raise VulnDbError(f"vulnerability database {path} has an unknown format; import it again")
        try:
            self.info = SnapshotInfo(**{k: json.loads(v) for k, v in meta.items() if k != "schema"}, path=str(path))
        except (TypeError, ValueError) as exc:
            self._db.close()
            raise VulnDbError(f"vulnerability database {path} has damaged metadata ({exc}); import it again") from None

    def records(self, package: str) -> list[dict[str, Any]]:
        try:
            rows = self._db.execute(
                "SELECT a.record FROM affects f JOIN advisories a ON a.id = f.advisory_id "
                "WHERE f.package = ? ORDER BY a.id",
                (canonicalize_name(package),),
            ).fetchall()
            return [json.loads(row[0]) for row in rows]
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise VulnDbError(f"vulnerability database {self.path} is corrupt ({exc}); import it again") from None

    def affecting(self, package: str, version: Version) -> list[Advisory]:
        """Every advisory whose affected ranges or versions include ``package`` at ``version``."""
        name = canonicalize_name(package)
        found = []
        for record in self.records(name):
            entries = [
                e
                for e in record.get("affected", [])
                if isinstance(e.get("package"), dict)
                and e["package"].get("ecosystem") == "PyPI"
                and canonicalize_name(str(e["package"].get("name", ""))) == name
            ]
            hits = [e for e in entries if _affects(e, version)]
            if not hits:
                continue
            fixed = sorted({v for e in hits for v in _fixed_versions(e, version)})
            specific = record.get("database_specific") or {}
            found.append(
                Advisory(
                    id=record["id"],
                    aliases=tuple(sorted(str(a) for a in record.get("aliases") or [])),
                    summary=_summary(record),
                    fixed=tuple(str(v) for v in fixed),
                    published=record.get("published"),
                    modified=record.get("modified"),
                    severity=str(specific.get("severity"))
                    if isinstance(specific, dict) and specific.get("severity")
                    else None,
                )
            )
        return found

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VulnDb:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_vulndb(location: Path | None = None) -> VulnDb:
    """Open the database at ``location`` (default: env or XDG); VulnDbError if missing or corrupt."""
    return VulnDb(database_file(location))


def status(location: Path | None = None) -> SnapshotInfo:
    with open_vulndb(location) as db:
        return db.info
