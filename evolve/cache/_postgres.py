"""PostgreSQL vector store: one embedding cache shared by every node of a deployment.

Vectors are ``bytea`` rows keyed by the content hash (:func:`evolve.cache.cache_key`). Writers never block
each other for long and never deadlock: inserts are ``INSERT … ON CONFLICT DO NOTHING`` in key order (two
writers inserting overlapping keys lock them in the same order), ``last_used`` is refreshed at most once a
day per row (UTC), with ``FOR UPDATE SKIP LOCKED`` (a row another session is touching is simply skipped), and a
transaction that PostgreSQL still aborts (deadlock, serialization failure) is retried. Each row records the
key scheme it was written under (``scheme``; a table made before schemes existed gets the column, its rows
scheme 1): rows of an older scheme are unreachable and :meth:`PostgresStore.prune` removes them.

The password never appears in the URL this store keeps or shows: give it in ``PGPASSWORD`` or a libpq
passfile (``~/.pgpass``, ``PGPASSFILE``); libpq reads both when the URL has none.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence

from evolve._pgurl import is_postgres_url, libpq_url
from evolve.cache._base import KEY_SCHEME, Entry, Found, FoundBuilder, StoreDamaged, StoreStats, VectorStore

__all__ = ["PostgresStore", "is_postgres_url", "libpq_url"]  # the URL helpers live in evolve._pgurl

log = logging.getLogger("evolve.cache")

_BATCH = 1000
_RETRIES = 5
#: ``last_used`` older than this (midnight UTC today) is refreshed on a read: at most one write per row and day,
#: as in the SQLite store
_STALE = "last_used < (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
_SIZE = "octet_length(payload) + octet_length(key) + octet_length(model) + 48"


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
                # made by an earlier open, indexes and storage setting included: take no DDL locks, unless it
                # predates key schemes (its rows are scheme 1; a constant default adds the column without a rewrite)
                if conn.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = %s AND column_name = 'scheme'", (t,)
                ).fetchone() is None:
                    conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS scheme integer NOT NULL DEFAULT 1")
                return
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {t} (
                    key bytea PRIMARY KEY,
                    model text NOT NULL,
                    dim integer NOT NULL,
                    payload bytea NOT NULL,
                    checksum bytea NOT NULL,
                    last_used timestamptz NOT NULL DEFAULT now(),
                    scheme integer NOT NULL DEFAULT 1
                )"""
            )
            # float32 vectors do not compress: skip TOAST's compression attempt on wide ones
            conn.execute(f"ALTER TABLE {t} ALTER COLUMN payload SET STORAGE EXTERNAL")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_model ON {t} (model)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_last_used ON {t} (last_used)")

    # ------------------------------------------------------------------ the contract
    def get(self, keys: Sequence[bytes]) -> Found:
        if not keys:
            return Found.empty()
        t = self.table

        def work(conn):
            found = FoundBuilder()
            for i in range(0, len(keys), _BATCH):
                batch = list(keys[i : i + _BATCH])
                rows = {
                    bytes(row[0]): row
                    for row in conn.execute(
                        f"SELECT key, model, dim, payload, checksum FROM {t} WHERE key = ANY(%s) AND scheme = %s",
                        (batch, KEY_SCHEME),
                    )
                }
                for j, key in enumerate(batch):
                    row = rows.get(key)
                    if row is not None:
                        found.add(i + j, key, row[1], row[2], row[3], row[4])
            self._touch(conn, sorted(set(found.keys)))
            return found.build()

        return self._with_retries(work)

    def _touch(self, conn, keys: list[bytes]) -> None:
        t = self.table
        for i in range(0, len(keys), _BATCH):
            conn.execute(
                f"""UPDATE {t} SET last_used = now() WHERE key IN (
                      SELECT key FROM {t} WHERE key = ANY(%s) AND {_STALE}
                      ORDER BY key FOR UPDATE SKIP LOCKED)""",
                (keys[i : i + _BATCH],),
            )

    def touch(self, keys: Sequence[bytes]) -> int:
        keys = sorted(set(keys))
        if not keys:
            return 0
        t = self.table

        def work(conn):
            n = 0
            for i in range(0, len(keys), _BATCH):
                n += conn.execute(f"SELECT count(*) FROM {t} WHERE key = ANY(%s) AND scheme = %s",
                                  (keys[i : i + _BATCH], KEY_SCHEME)).fetchone()[0]
            self._touch(conn, keys)
            return int(n)

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
                    f"""INSERT INTO {t} (key, model, dim, payload, checksum, scheme)
                        SELECT k, m, d, p, c, %s FROM unnest(%s::bytea[], %s::text[], %s::integer[], %s::bytea[],
                                                            %s::bytea[]) AS u(k, m, d, p, c)
                        ORDER BY 1
                        ON CONFLICT (key) DO NOTHING""",
                    (KEY_SCHEME, [e.key for e in batch], [e.model for e in batch], [e.dim for e in batch],
                     [e.payload for e in batch], [e.checksum for e in batch]),
                )

        self._with_retries(work)

    def delete(self, keys: Sequence[bytes]) -> None:
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
            n, stale = conn.execute(
                f"SELECT count(*) FILTER (WHERE scheme = %s), count(*) FILTER (WHERE scheme < %s) FROM {t}",
                (KEY_SCHEME, KEY_SCHEME),
            ).fetchone()
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (t,)).fetchone()[0]
            return StoreStats(entries=int(n), size_bytes=int(size or 0), location=self.location,
                              stale_entries=int(stale))

        return self._with_retries(work)

    def payload_bytes(self) -> int:
        t = self.table
        return int(self._with_retries(lambda conn: conn.execute(
            f"SELECT COALESCE(sum({_SIZE}), 0) FROM {t} WHERE scheme = %s", (KEY_SCHEME,)).fetchone()[0]))

    def prune(self, max_bytes: int | None) -> int:
        """Drop rows of older key schemes, then keep the most recently used entries whose sizes add up to at most
        ``max_bytes`` (``None``: no limit).

        Sizes are counted as in :class:`~evolve.cache.SQLiteStore` (payload + key + model + 48 bytes), so one
        ``--max-size`` means the same on both stores. The table's files shrink when autovacuum reuses space.
        """
        t = self.table

        def work(conn):
            removed = conn.execute(f"DELETE FROM {t} WHERE scheme < %s", (KEY_SCHEME,)).rowcount
            if max_bytes is not None:
                removed += conn.execute(
                    f"""DELETE FROM {t} USING (
                          SELECT key, sum({_SIZE}) OVER (ORDER BY last_used DESC, key) AS kept
                          FROM {t} WHERE scheme = %s) ranked
                        WHERE {t}.key = ranked.key AND ranked.kept > %s""",
                    (KEY_SCHEME, int(max_bytes)),
                ).rowcount
            return removed

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
