"""PostgreSQL vector store: one embedding cache shared by every node of a deployment.

Vectors are ``bytea`` rows keyed by the content hash (:func:`evolve.cache.cache_key`). Writers never block
each other for long and never deadlock: inserts are ``INSERT … ON CONFLICT DO NOTHING`` in key order (two
writers inserting overlapping keys lock them in the same order), ``last_used`` is refreshed with
``FOR UPDATE SKIP LOCKED`` (a row another session is touching is simply skipped), and a transaction that
PostgreSQL still aborts (deadlock, serialization failure) is retried.

The password never appears in the URL this store keeps or shows: give it in ``PGPASSWORD`` or a libpq
passfile (``~/.pgpass``, ``PGPASSFILE``); libpq reads both when the URL has none.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable

from evolve.cache._base import Entry, StoreDamaged, StoreStats, VectorStore

__all__ = ["PostgresStore", "is_postgres_url", "libpq_url"]

log = logging.getLogger("evolve.cache")

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
_BATCH = 1000
#: ``last_used`` is refreshed at most this often per row: LRU needs minutes, not every read a write.
_TOUCH_SECONDS = 600
_RETRIES = 5


def is_postgres_url(url: object) -> bool:
    return isinstance(url, str) and "://" in url and url.split("://", 1)[0].lower() in _SCHEMES


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy form) -> ``postgresql://…`` (what libpq parses)."""
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in _SCHEMES:
        raise ValueError(f"expected a postgresql:// URL, got scheme '{scheme}'")
    return "postgresql://" + rest


class PostgresStore(VectorStore):
    """:class:`VectorStore` in a PostgreSQL table (default ``evolve_vectors``), safe with many writers."""

    def __init__(self, url: str, *, table: str = "evolve_vectors", connect_timeout: int = 10):
        from evolve.secrets import redact_url, warn_inline_password

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", table):
            raise ValueError(f"table: expected a lower-case SQL identifier, got {table!r}")
        warn_inline_password(url, "cache URL")
        self.table = table
        self._conninfo = libpq_url(url)
        self.location = redact_url(self._conninfo)
        self._timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn = None
        self._closed = False
        self._with_retries(self._ensure_schema)

    # ------------------------------------------------------------------ connection and errors
    def _connect(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._timeout,
                                         application_name="evolve-cache")
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def _with_retries(self, fn):
        """Run ``fn(conn)``; retry aborted transactions, reconnect once; anything else -> StoreDamaged."""
        import psycopg
        from psycopg import errors

        if self._closed:
            raise StoreDamaged(f"{self.location}: store is closed")
        reconnected = False
        attempt = 0
        with self._lock:
            while True:
                try:
                    return fn(self._connect())
                except (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable):
                    attempt += 1
                    if attempt >= _RETRIES:
                        raise StoreDamaged(f"{self.location}: writers kept colliding ({attempt} tries)") from None
                    time.sleep(0.05 * attempt)
                except (psycopg.OperationalError, psycopg.InterfaceError, errors.UndefinedTable) as err:
                    # a dropped connection (server restart, network) or a table dropped under us: one more try
                    self._drop_connection()
                    if reconnected:
                        raise self._damaged(err) from None
                    reconnected = True
                    if isinstance(err, errors.UndefinedTable):
                        try:
                            self._ensure_schema(self._connect())
                        except psycopg.Error as err2:
                            raise self._damaged(err2) from None
                except psycopg.Error as err:
                    raise self._damaged(err) from None

    def _damaged(self, err: Exception) -> StoreDamaged:
        return StoreDamaged(f"{self.location}: {' '.join(str(err).split())}")

    def _ensure_schema(self, conn) -> None:
        t = self.table
        with conn.transaction():
            # concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: serialise the DDL
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"evolve-cache-schema:{t}",))
            if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None:
                return  # made by an earlier open, indexes and storage setting included: take no DDL locks
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {t} (
                    key bytea PRIMARY KEY,
                    model text NOT NULL,
                    dim integer NOT NULL,
                    payload bytea NOT NULL,
                    checksum bytea NOT NULL,
                    last_used timestamptz NOT NULL DEFAULT now()
                )"""
            )
            # float32 vectors do not compress: skip TOAST's compression attempt on wide ones
            conn.execute(f"ALTER TABLE {t} ALTER COLUMN payload SET STORAGE EXTERNAL")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_model ON {t} (model)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_last_used ON {t} (last_used)")

    # ------------------------------------------------------------------ the contract
    def get(self, keys: list[bytes]) -> dict[bytes, Entry]:
        keys = sorted(set(keys))
        if not keys:
            return {}
        t = self.table

        def work(conn):
            out: dict[bytes, Entry] = {}
            for i in range(0, len(keys), _BATCH):
                batch = keys[i : i + _BATCH]
                rows = conn.execute(
                    f"SELECT key, model, dim, payload, checksum FROM {t} WHERE key = ANY(%s)", (batch,)
                ).fetchall()
                for key, model, dim, payload, checksum in rows:
                    out[bytes(key)] = Entry(bytes(key), model, int(dim), bytes(payload), bytes(checksum))
            found = sorted(out)
            for i in range(0, len(found), _BATCH):
                conn.execute(
                    f"""UPDATE {t} SET last_used = now() WHERE key IN (
                          SELECT key FROM {t} WHERE key = ANY(%s)
                          AND last_used < now() - make_interval(secs => %s)
                          ORDER BY key FOR UPDATE SKIP LOCKED)""",
                    (found[i : i + _BATCH], _TOUCH_SECONDS),
                )
            return out

        return self._with_retries(work)

    def put(self, entries: Iterable[Entry]) -> None:
        unique = {e.key: e for e in entries}
        rows = [unique[k] for k in sorted(unique)]  # key order: overlapping writers cannot deadlock
        if not rows:
            return
        t = self.table

        def work(conn):
            for i in range(0, len(rows), _BATCH):
                batch = rows[i : i + _BATCH]
                conn.execute(
                    f"""INSERT INTO {t} (key, model, dim, payload, checksum)
                        SELECT * FROM unnest(%s::bytea[], %s::text[], %s::integer[], %s::bytea[], %s::bytea[])
                        ORDER BY 1
                        ON CONFLICT (key) DO NOTHING""",
                    ([e.key for e in batch], [e.model for e in batch], [e.dim for e in batch],
                     [e.payload for e in batch], [e.checksum for e in batch]),
                )

        self._with_retries(work)

    def delete(self, keys: list[bytes]) -> None:
        keys = sorted(set(keys))
        if not keys:
            return
        t = self.table

        def work(conn):
            for i in range(0, len(keys), _BATCH):
                conn.execute(f"DELETE FROM {t} WHERE key = ANY(%s)", (keys[i : i + _BATCH],))

        self._with_retries(work)

    def stats(self) -> StoreStats:
        t = self.table

        def work(conn):
            n = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (t,)).fetchone()[0]
            return StoreStats(entries=int(n), size_bytes=int(size or 0), location=self.location)

        return self._with_retries(work)

    def prune(self, max_bytes: int) -> int:
        """Keep the most recently used entries whose sizes add up to at most ``max_bytes``; drop the rest.

        Sizes are counted as in :class:`~evolve.cache.SQLiteStore` (payload + key + model + 48 bytes), so one
        ``--max-size`` means the same on both stores. The table's files shrink when autovacuum reuses space.
        """
        t = self.table

        def work(conn):
            cur = conn.execute(
                f"""DELETE FROM {t} USING (
                      SELECT key, sum(octet_length(payload) + octet_length(key) + octet_length(model) + 48)
                             OVER (ORDER BY last_used DESC, key) AS kept
                      FROM {t}) ranked
                    WHERE {t}.key = ranked.key AND ranked.kept > %s""",
                (int(max_bytes),),
            )
            return cur.rowcount

        return int(self._with_retries(work))

    def invalidate(self, model: str) -> int:
        t = self.table
        return int(self._with_retries(lambda conn: conn.execute(f"DELETE FROM {t} WHERE model = %s", (model,)).rowcount))

    def close(self) -> None:
        with self._lock:
            self._drop_connection()
            self._closed = True

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r}, table={self.table!r})"
