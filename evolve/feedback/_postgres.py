"""The feedback store in PostgreSQL (``--feedback-url postgresql://evolve@db/evolve``): one store for the serving
nodes and the nightly job. Autocommit: every insert is committed (and, with PostgreSQL's default
``synchronous_commit=on``, flushed) before :meth:`add_event` returns. The password comes from ``PGPASSWORD`` or a
libpq passfile, never from the URL this store shows."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime

from evolve.errors import StorageError
from evolve.feedback._base import FeedbackStore

__all__ = ["PostgresFeedbackStore"]


class PostgresFeedbackStore(FeedbackStore):
    """Tables ``<prefix>queries`` and ``<prefix>events`` (default prefix ``ubi_``, like UBI's index names)."""

    def __init__(self, url: str, *, prefix: str = "ubi_", connect_timeout: int = 10):
        from evolve._pgurl import libpq_url
        from evolve.secrets import redact_url, warn_inline_password

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
            raise ValueError(f"prefix: expected a lower-case SQL identifier, got {prefix!r}")
        warn_inline_password(url, "feedback URL")
        self._conninfo = libpq_url(url)
        self.location = redact_url(self._conninfo)
        self._q, self._e = f"{prefix}queries", f"{prefix}events"
        self._timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn = None
        self._run(self._ensure_schema)

    def _connect(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._timeout,
                                             application_name="evolve-feedback")
            except psycopg.OperationalError as err:
                reason = " ".join(str(err).split())
                raise StorageError(f"feedback store {self.location}: expected a reachable PostgreSQL, got '{reason}'") from None
        return self._conn

    def _run(self, fn, *args):
        """``fn(conn, *args)`` under the lock; one reconnect when the connection broke."""
        import psycopg

        with self._lock:
            for attempt in (0, 1):
                conn = self._connect()
                try:
                    return fn(conn, *args)
                except psycopg.OperationalError:
                    if attempt:
                        raise
                    try:
                        conn.close()
                    except Exception:
                        pass
                    self._conn = None

    def _ensure_schema(self, conn) -> None:
        q, e = self._q, self._e
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (q,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {q} (query_id text PRIMARY KEY, client_id text NOT NULL, "
                         "ts timestamptz NOT NULL, record jsonb NOT NULL)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {q}_client ON {q} (client_id)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {q}_ts ON {q} (ts)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {e} (event_id text PRIMARY KEY, query_id text NOT NULL, "
                         "client_id text NOT NULL, action_name text NOT NULL, ts timestamptz NOT NULL, "
                         "record jsonb NOT NULL)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {e}_query ON {e} (query_id)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {e}_client ON {e} (client_id)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {e}_ts ON {e} (ts)")

    @staticmethod
    def _json(record: dict) -> str:
        return json.dumps(record, ensure_ascii=False, sort_keys=True)

    def add_query(self, record: dict) -> None:
        import psycopg

        def go(conn):
            conn.execute(f"INSERT INTO {self._q} (query_id, client_id, ts, record) VALUES (%s, %s, %s, %s::jsonb)",
                         (record["query_id"], record["client_id"], record["timestamp"], self._json(record)))

        try:
            self._run(go)
        except psycopg.errors.UniqueViolation:
            raise StorageError(f"feedback store: query_id '{record['query_id']}' is stored already") from None

    def set_query_attribute(self, query_id: str, key: str, value) -> bool:
        def go(conn):
            cur = conn.execute(f"UPDATE {self._q} SET record = jsonb_set(record, %s, %s::jsonb, true) "
                               "WHERE query_id = %s", (["query_attributes", key], json.dumps(value), query_id))
            return cur.rowcount

        return self._run(go) == 1

    def add_event(self, record: dict) -> bool:
        def go(conn):
            cur = conn.execute(
                f"INSERT INTO {self._e} (event_id, query_id, client_id, action_name, ts, record) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (event_id) DO NOTHING",
                (record["event_id"], record["query_id"], record["client_id"], record["action_name"],
                 record["timestamp"], self._json(record)))
            return cur.rowcount == 1

        return self._run(go)

    def _records(self, sql: str, params: tuple = ()) -> list[dict]:
        def go(conn):
            return [r[0] for r in conn.execute(sql, params).fetchall()]

        return [r if isinstance(r, dict) else json.loads(r) for r in self._run(go)]

    def get_query(self, query_id: str) -> dict | None:
        rows = self._records(f"SELECT record FROM {self._q} WHERE query_id = %s", (query_id,))
        return rows[0] if rows else None

    def queries(self, since: datetime | None = None) -> list[dict]:
        if since is None:
            return self._records(f"SELECT record FROM {self._q} ORDER BY ts, query_id")
        return self._records(f"SELECT record FROM {self._q} WHERE ts >= %s ORDER BY ts, query_id", (since,))

    def events(self, since: datetime | None = None) -> list[dict]:
        if since is None:
            return self._records(f"SELECT record FROM {self._e} ORDER BY ts, event_id")
        return self._records(f"SELECT record FROM {self._e} WHERE ts >= %s ORDER BY ts, event_id", (since,))

    def event_ids(self) -> set[str]:
        return set(self._run(lambda conn: [r[0] for r in conn.execute(f"SELECT event_id FROM {self._e}")]))

    def _delete(self, where: str, params: tuple) -> tuple[int, int]:
        q, e = self._q, self._e

        def go(conn):
            with conn.transaction():
                ne = conn.execute(f"DELETE FROM {e} WHERE {where} OR query_id IN (SELECT query_id FROM {q} WHERE {where})",
                                  params + params).rowcount
                nq = conn.execute(f"DELETE FROM {q} WHERE {where}", params).rowcount
            return nq, ne

        return self._run(go)

    def delete_client(self, client_id: str) -> tuple[int, int]:
        return self._delete("client_id = %s", (client_id,))

    def delete_before(self, when: datetime) -> tuple[int, int]:
        return self._delete("ts < %s", (when,))

    def check(self) -> str:
        def go(conn):
            for t in (self._q, self._e):
                conn.execute(f"SELECT count(*) FROM {t}").fetchone()
            return "ok"

        return self._run(go)

    def drop(self) -> None:
        """Drop both tables (tests use throwaway prefixes)."""
        self._run(lambda conn: conn.execute(f"DROP TABLE IF EXISTS {self._q}, {self._e}"))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
            self._conn = None
