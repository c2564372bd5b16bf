"""The default feedback store: one SQLite file in the workspace (``<workspace>/feedback.sqlite``).

WAL journal and ``synchronous=FULL``: every commit is on disk before :meth:`add_event` returns, so an event the
server acknowledged survives a SIGKILL (and a power cut) of the server; readers (``evolve feedback export``)
never block the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from evolve.errors import StorageError
from evolve.feedback._base import FeedbackStore
from evolve.feedback._records import iso

__all__ = ["SQLiteFeedbackStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ubi_queries (
    query_id   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    ts         TEXT NOT NULL,
    record     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ubi_queries_client ON ubi_queries (client_id);
CREATE INDEX IF NOT EXISTS ubi_queries_ts ON ubi_queries (ts);
CREATE TABLE IF NOT EXISTS ubi_events (
    event_id    TEXT PRIMARY KEY,
    query_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    action_name TEXT NOT NULL,
    ts          TEXT NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ubi_events_query ON ubi_events (query_id);
CREATE INDEX IF NOT EXISTS ubi_events_client ON ubi_events (client_id);
CREATE INDEX IF NOT EXISTS ubi_events_ts ON ubi_events (ts);
"""


class SQLiteFeedbackStore(FeedbackStore):
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().absolute()
        self.location = str(self.path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StorageError(f"feedback store {self.path}: expected a SQLite database, got '{err}'") from None
        except OSError as err:
            raise StorageError(f"feedback store {self.path}: expected a writable file, got '{err.strerror}'") from None

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return cur.rowcount

    def add_query(self, record: dict) -> None:
        try:
            self._write("INSERT INTO ubi_queries (query_id, client_id, ts, record) VALUES (?, ?, ?, ?)",
                        (record["query_id"], record["client_id"], record["timestamp"],
                         json.dumps(record, ensure_ascii=False, sort_keys=True)))
        except sqlite3.IntegrityError:
            raise StorageError(f"feedback store: query_id '{record['query_id']}' is stored already") from None

    def add_event(self, record: dict) -> bool:
        n = self._write("INSERT OR IGNORE INTO ubi_events (event_id, query_id, client_id, action_name, ts, record) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (record["event_id"], record["query_id"], record["client_id"], record["action_name"],
                         record["timestamp"], json.dumps(record, ensure_ascii=False, sort_keys=True)))
        return n == 1

    def set_query_attribute(self, query_id: str, key: str, value) -> bool:
        n = self._write("UPDATE ubi_queries SET record = json_set(record, ?, json(?)) WHERE query_id = ?",
                        (f'$.query_attributes."{key}"', json.dumps(value, ensure_ascii=False, sort_keys=True),
                         query_id))
        return n == 1

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def get_query(self, query_id: str) -> dict | None:
        rows = self._read("SELECT record FROM ubi_queries WHERE query_id = ?", (query_id,))
        return json.loads(rows[0][0]) if rows else None

    def queries(self, since: datetime | None = None) -> list[dict]:
        if since is None:
            rows = self._read("SELECT record FROM ubi_queries ORDER BY ts, query_id")
        else:
            rows = self._read("SELECT record FROM ubi_queries WHERE ts >= ? ORDER BY ts, query_id", (iso(since),))
        return [json.loads(r[0]) for r in rows]

    def events(self, since: datetime | None = None) -> list[dict]:
        if since is None:
            rows = self._read("SELECT record FROM ubi_events ORDER BY ts, event_id")
        else:
            rows = self._read("SELECT record FROM ubi_events WHERE ts >= ? ORDER BY ts, event_id", (iso(since),))
        return [json.loads(r[0]) for r in rows]

    def event_ids(self) -> set[str]:
        return {r[0] for r in self._read("SELECT event_id FROM ubi_events")}

    def _delete(self, queries_where: str, events_where: str, params: tuple) -> tuple[int, int]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                ne = self._conn.execute(
                    f"DELETE FROM ubi_events WHERE {events_where} OR query_id IN "
                    f"(SELECT query_id FROM ubi_queries WHERE {queries_where})", params + params).rowcount
                nq = self._conn.execute(f"DELETE FROM ubi_queries WHERE {queries_where}", params).rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return nq, ne

    def delete_client(self, client_id: str) -> tuple[int, int]:
        return self._delete("client_id = ?", "client_id = ?", (client_id,))

    def delete_before(self, when: datetime) -> tuple[int, int]:
        return self._delete("ts < ?", "ts < ?", (iso(when),))

    def check(self) -> str:
        result = self._read("PRAGMA integrity_check")[0][0]
        if result != "ok":
            raise StorageError(f"feedback store {self.path}: expected integrity_check 'ok', got '{result}'")
        return "ok"

    def close(self) -> None:
        with self._lock:
            self._conn.close()
