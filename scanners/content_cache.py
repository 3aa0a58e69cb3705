"""A results cache keyed by file content, so an unchanged tree rescans without re-analysing.

One SQLite file per scanner: safe for two scans at once, one write transaction per batch. The
cache is only a cache: if it cannot be opened or is damaged it is rebuilt or bypassed, never a
reason to fail a scan.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "preaudit"


class ContentCache:
    """Maps a content key (a hex digest) to a JSON-serialisable result."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.problem: str | None = None
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection | None:
        for attempt in range(2):
            db: sqlite3.Connection | None = None
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            except sqlite3.DatabaseError as exc:
                if db is not None:
                    db.close()
                self.problem = f"cache {path} unusable ({exc}); scanning without it"
                # A damaged cache file: throw it away once and start again.
                if attempt == 0 and path.exists():
                    for suffix in ("", "-wal", "-shm"):
                        with contextlib.suppress(OSError):
                            Path(f"{path}{suffix}").unlink()
                    continue
                return None
            except OSError as exc:
                self.problem = f"cache {path} unusable ({exc.strerror or exc}); scanning without it"
                return None
            else:
                self.problem = None
                return db
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        if self._db is None:
            return {}
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        try:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", batch)  # noqa: S608 - placeholders only
                for key, value in rows:
                    found[key] = json.loads(value)
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            self.problem = f"cache {self.path} unreadable ({exc}); scanning without it"
            self.close()
            return {}
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        if self._db is None or not items:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, separators=(",", ":"))) for k, v in items.items()],
                )
        except sqlite3.DatabaseError as exc:
            self.problem = f"cache {self.path} not writable ({exc}); results not cached"
            self.close()

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
