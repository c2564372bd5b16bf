"""SQLite (WAL) vector store: one file per workspace, many writer processes, atomic transactions."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from evolve.cache._base import Entry, StoreDamaged, StoreStats, VectorStore

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    payload BLOB NOT NULL,
    checksum BLOB NOT NULL,
    last_used REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_model ON vectors(model);
CREATE INDEX IF NOT EXISTS vectors_last_used ON vectors(last_used);
"""

_BATCH = 500


def _is_busy(err: sqlite3.OperationalError) -> bool:
    return "locked" in str(err) or "busy" in str(err)


class SQLiteStore(VectorStore):
    def __init__(self, path: str | os.PathLike, *, check: bool = True):
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Another process creating the file or switching it to WAL can make these statements fail with "database
        # is locked" at once (SQLite skips the busy handler there). That is contention, not damage: retry, and
        # never report it as StoreDamaged (the cache would move a healthy file aside under a live writer).
        deadline = time.monotonic() + 120
        while True:
            try:
                self._run(lambda: self._open(check))
                return
            except sqlite3.OperationalError:  # _run lets only "locked"/"busy" through
                self._close_quietly()
                if time.monotonic() > deadline:
                    from evolve.errors import StorageError

                    raise StorageError(f"embedding cache {self.path} stayed locked by another process for 120 s") from None
                time.sleep(0.05 + random.random() * 0.2)
            except StoreDamaged:
                self._close_quietly()
                raise

    def _open(self, check: bool) -> None:
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=120000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if check:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise StoreDamaged(f"integrity check failed: {rows[0][0]}")
        self._db.executescript(_SCHEMA)

    def _close_quietly(self):
        try:
            self._db.close()
        except Exception:
            pass

    def _run(self, fn):
        try:
            return fn()
        except sqlite3.OperationalError as err:
            if _is_busy(err):
                raise
            raise StoreDamaged(str(err)) from None
        except sqlite3.DatabaseError as err:
            raise StoreDamaged(str(err)) from None

    def get(self, keys):
        out: dict[bytes, Entry] = {}

        def work():
            now = time.time()
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                marks = ",".join("?" * len(batch))
                for key, model, dim, payload, checksum in self._db.execute(
                    f"SELECT key, model, dim, payload, checksum FROM vectors WHERE key IN ({marks})", batch
                ):
                    out[bytes(key)] = Entry(bytes(key), model, dim, bytes(payload), bytes(checksum))
            if out:
                found = list(out)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for i in range(0, len(found), _BATCH):
                        batch = found[i : i + _BATCH]
                        self._db.execute(
                            f"UPDATE vectors SET last_used=? WHERE key IN ({','.join('?' * len(batch))})", [now, *batch]
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            return out

        return self._run(work)

    def put(self, entries: Iterable[Entry]):
        rows = [(e.key, e.model, e.dim, e.payload, e.checksum, time.time()) for e in entries]
        if not rows:
            return

        def work():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO vectors(key, model, dim, payload, checksum, last_used) VALUES (?,?,?,?,?,?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        self._run(work)

    def delete(self, keys):
        def work():
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                self._db.execute(f"DELETE FROM vectors WHERE key IN ({','.join('?' * len(batch))})", batch)

        self._run(work)

    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def stats(self):
        n = self._run(lambda: self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        return StoreStats(entries=int(n), size_bytes=self._size(), location=self.location)

    def _payload_bytes(self) -> int:
        return int(
            self._db.execute("SELECT COALESCE(SUM(LENGTH(payload) + LENGTH(key) + LENGTH(model) + 48), 0) FROM vectors").fetchone()[0]
        )

    def prune(self, max_bytes):
        def work():
            removed = 0
            total = self._payload_bytes()
            if total > max_bytes:
                rows = self._db.execute(
                    "SELECT key, LENGTH(payload) + LENGTH(key) + LENGTH(model) + 48 FROM vectors ORDER BY last_used ASC"
                ).fetchall()
                drop = []
                for key, size in rows:
                    if total <= max_bytes:
                        break
                    drop.append(key)
                    total -= size
                self.delete(drop)
                removed = len(drop)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            return removed

        return self._run(work)

    def invalidate(self, model):
        def work():
            cur = self._db.execute("DELETE FROM vectors WHERE model=?", (model,))
            return cur.rowcount

        return self._run(work)

    def close(self):
        if getattr(self, "_db", None) is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._close_quietly()
            self._db = None
