"""SQLite (WAL) vector store: one file per workspace, many writer processes, atomic transactions.

Layout (key scheme 2): ``entries`` is a rowid table (a 1.5 KB vector fits a 16 KB page several times over; the
old WITHOUT ROWID table spilled every row onto an overflow page, 4.7 KB per 384-d vector) with a unique index on
the key; ``touched`` holds each entry's day of last use, apart from the vectors, so recording a use rewrites a
12-byte row, never the vector's page, and happens at most once per entry and day. A database written by key
scheme 1 keeps its ``vectors`` table until ``evolve cache prune`` drops it: no key reaches it any more.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from evolve.cache._base import KEY_SCHEME, Entry, Found, FoundBuilder, StoreDamaged, StoreStats, VectorStore, today

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    scheme INTEGER NOT NULL,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    checksum BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_model ON entries(model);
CREATE TABLE IF NOT EXISTS touched (
    id INTEGER PRIMARY KEY,
    day INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_untouch AFTER DELETE ON entries BEGIN
    DELETE FROM touched WHERE id = old.id;
END;
"""

#: keys per SELECT ... IN (...) statement
_BATCH = 1000
#: the size an entry counts for prune: payload + key + model + 48 bytes (the same on every store)
_SIZE = "LENGTH(payload) + LENGTH(key) + LENGTH(model) + 48"
#: how long a read waits for the write lock to record its touches before leaving them for the next read
_TOUCH_WAIT_MS = 2000


def _is_busy(err: sqlite3.OperationalError) -> bool:
    return "locked" in str(err) or "busy" in str(err)


class SQLiteStore(VectorStore):
    """:class:`VectorStore` in one SQLite file. ``clock`` (seconds since the epoch) dates the touches (tests)."""

    def __init__(self, path: str | os.PathLike, *, check: bool = True, clock=time.time):
        self.path = Path(path)
        self.location = str(self.path)
        self._clock = clock
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
        self._db.execute("PRAGMA page_size=16384")  # takes effect only on a new, empty file
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

    def _write(self, fn):
        """``fn()`` inside BEGIN IMMEDIATE ... COMMIT."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
            self._db.execute("COMMIT")
            return out
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ reads
    def get(self, keys: Sequence[bytes]) -> Found:
        def work():
            found = FoundBuilder()
            stale: list[int] = []
            day = today(self._clock)
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                rows = {
                    bytes(row[1]): row
                    for row in self._db.execute(
                        "SELECT e.id, e.key, e.model, e.dim, e.checksum, e.payload, t.day FROM entries e "
                        f"LEFT JOIN touched t ON t.id = e.id WHERE e.key IN ({','.join('?' * len(batch))})",
                        batch,
                    )
                }
                if not rows:
                    continue
                for j, key in enumerate(batch):
                    row = rows.get(key)
                    if row is not None:
                        found.add(i + j, key, row[2], row[3], row[5], row[4])
                        if row[6] is None or row[6] < day:
                            stale.append(row[0])
            if stale:
                self._touch(stale, day)
            return found.build()

        return self._run(work)

    def touch(self, keys: Sequence[bytes]) -> int:
        def work():
            day = today(self._clock)
            present, stale = 0, []
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                rows = self._db.execute(
                    "SELECT e.id, t.day FROM entries e LEFT JOIN touched t ON t.id = e.id "
                    f"WHERE e.key IN ({','.join('?' * len(batch))})",
                    batch,
                ).fetchall()
                present += len(rows)
                stale.extend(rowid for rowid, d in rows if d is None or d < day)
            if stale:
                self._touch(stale, day)
            return present

        return self._run(work)

    def _touch(self, ids: list[int], day: int) -> None:
        """Record today as the last use of ``ids``. Best effort: a write lock held elsewhere for longer than
        :data:`_TOUCH_WAIT_MS` leaves the touches to the next read (recency is kept by the day anyway)."""
        self._db.execute(f"PRAGMA busy_timeout={_TOUCH_WAIT_MS}")
        try:
            def work():
                for i in range(0, len(ids), _BATCH):
                    batch = ids[i : i + _BATCH]
                    self._db.execute(
                        f"INSERT OR REPLACE INTO touched(id, day) SELECT id, ? FROM entries WHERE id IN "
                        f"({','.join('?' * len(batch))})",
                        [day, *batch],
                    )

            self._write(work)
        except sqlite3.OperationalError as err:
            if not _is_busy(err):
                raise
        finally:
            self._db.execute("PRAGMA busy_timeout=120000")

    # ------------------------------------------------------------------ writes
    def put(self, entries: Iterable[Entry]):
        rows = [(e.key, KEY_SCHEME, e.model, e.dim, e.checksum, e.payload) for e in entries]
        if not rows:
            return
        day = today(self._clock)

        def work():
            self._db.executemany(
                "INSERT OR IGNORE INTO entries(key, scheme, model, dim, checksum, payload) VALUES (?,?,?,?,?,?)", rows
            )
            for i in range(0, len(rows), _BATCH):
                batch = [r[0] for r in rows[i : i + _BATCH]]
                self._db.execute(
                    f"INSERT OR REPLACE INTO touched(id, day) SELECT id, ? FROM entries WHERE key IN "
                    f"({','.join('?' * len(batch))})",
                    [day, *batch],
                )

        self._run(lambda: self._write(work))

    def delete(self, keys):
        def work():
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                self._db.execute(f"DELETE FROM entries WHERE key IN ({','.join('?' * len(batch))})", batch)

        self._run(lambda: self._write(work))

    # ------------------------------------------------------------------ maintenance
    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def _has_old_table(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='vectors'").fetchone() is not None

    def stats(self):
        def work():
            n, stale = self._db.execute(
                "SELECT COALESCE(SUM(scheme = ?), 0), COALESCE(SUM(scheme < ?), 0) FROM entries", (KEY_SCHEME, KEY_SCHEME)
            ).fetchone()
            if self._has_old_table():
                stale += self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return int(n), int(stale)

        n, stale = self._run(work)
        return StoreStats(entries=n, size_bytes=self._size(), location=self.location, stale_entries=stale)

    def payload_bytes(self) -> int:
        return int(self._run(lambda: self._db.execute(
            f"SELECT COALESCE(SUM({_SIZE}), 0) FROM entries WHERE scheme = ?", (KEY_SCHEME,)).fetchone()[0]))

    def prune(self, max_bytes):
        def stale():
            removed = 0
            if self._has_old_table():
                removed += self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
                self._db.execute("DROP TABLE vectors")
            removed += self._db.execute("DELETE FROM entries WHERE scheme < ?", (KEY_SCHEME,)).rowcount
            self._db.execute("DELETE FROM touched WHERE id NOT IN (SELECT id FROM entries)")
            return removed

        def lru():
            total = self.payload_bytes()
            if max_bytes is None or total <= max_bytes:
                return 0
            # least recently used first; within a day, the oldest entry first
            rows = self._db.execute(
                f"SELECT e.id, {_SIZE} FROM entries e LEFT JOIN touched t ON t.id = e.id WHERE e.scheme = ? "
                "ORDER BY COALESCE(t.day, 0), e.id",
                (KEY_SCHEME,),
            ).fetchall()
            drop = []
            for rowid, size in rows:
                if total <= max_bytes:
                    break
                drop.append(rowid)
                total -= size
            for i in range(0, len(drop), _BATCH):
                batch = drop[i : i + _BATCH]
                self._db.execute(f"DELETE FROM entries WHERE id IN ({','.join('?' * len(batch))})", batch)
            return len(drop)

        def work():
            removed = self._write(stale) + self._write(lru)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            return removed

        return self._run(work)

    def invalidate(self, model):
        return self._run(lambda: self._write(
            lambda: self._db.execute("DELETE FROM entries WHERE model=?", (model,)).rowcount))

    def close(self):
        if getattr(self, "_db", None) is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._close_quietly()
            self._db = None
