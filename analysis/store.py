"""``sweep.db``: every finished design point, written the moment it finishes.

One SQLite file beside the sweep's output. Each point is one row keyed by its identity (the
base files, fixed settings and the point's values; :func:`analysis.sweep_spec.point_key`),
inserted in its own transaction, so a crash or ``kill -9`` loses at most the points still
running; a rerun reads the finished keys and submits only the rest. Only the coordinating
process writes (workers return results to it), so there is never a write race; the journal
is SQLite's write-ahead log, which survives a killed writer.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import OutputError, UserError
from sim.fileio import ensure_writable_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    command TEXT NOT NULL,
    executor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '[]',
    seconds REAL NOT NULL DEFAULT 0,
    run INTEGER NOT NULL,
    finished REAL NOT NULL
);
"""

# What is stored: ``ok`` (measured) or ``invalid`` (could not be built or mapped; the reason
# says why). Constraints are applied when the outputs are written, so a measured point is
# stored ``ok`` whatever the constraints and re-classified when they change.


@dataclass(frozen=True)
class PointRow:
    """One finished point as stored."""

    key: str
    idx: int
    params: dict[str, Any]
    status: str
    reason: str
    metrics: dict[str, float]
    notes: list[str]
    seconds: float
    run: int


class SweepStore:
    """The SQLite file of one sweep (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        ensure_writable_dir(self.path.parent)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> UserError:
        """A SQLite failure as one message naming the file (a full disk, a read-only folder,
        a file that is not a sweep database); the points stored before it are kept."""
        if isinstance(exc, sqlite3.OperationalError) and "disk" in str(exc).lower():
            return OutputError(self.path, f"{exc}; the points finished so far are kept, "
                                          "and rerunning the command resumes after them")
        return UserError(f"{self.path}: {exc} (is it a sweep.db written by imcsim? Delete "
                         "it or choose another --out to start afresh)")

    def start_run(self, command: str, executor: str) -> int:
        """Record the start of one invocation; returns its run id."""
        try:
            with self._db:
                cur = self._db.execute("INSERT INTO runs (started, command, executor) "
                                       "VALUES (?, ?, ?)", (time.time(), command, executor))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        return int(cur.lastrowid)

    def finished_keys(self) -> set[str]:
        """Keys of every point already stored."""
        return {k for (k,) in self._db.execute("SELECT key FROM points")}

    def add(self, row: PointRow) -> bool:
        """Store one finished point in its own transaction; False if it was already there."""
        try:
            with self._db:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO points (key, idx, params, status, reason, metrics, "
                    "notes, seconds, run, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.key, row.idx, json.dumps(row.params, default=str), row.status,
                     row.reason, json.dumps(row.metrics), json.dumps(row.notes), row.seconds,
                     row.run, time.time()))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        return cur.rowcount == 1

    def rows(self, keys: list[str] | None = None) -> list[PointRow]:
        """Stored points (only ``keys`` if given), in point order."""
        out = []
        for r in self._db.execute("SELECT key, idx, params, status, reason, metrics, notes, "
                                  "seconds, run FROM points ORDER BY idx, key"):
            out.append(PointRow(key=r[0], idx=r[1], params=json.loads(r[2]), status=r[3],
                                reason=r[4], metrics=json.loads(r[5]), notes=json.loads(r[6]),
                                seconds=r[7], run=r[8]))
        if keys is not None:
            wanted = set(keys)
            out = [r for r in out if r.key in wanted]
        return out

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
