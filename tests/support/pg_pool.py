"""Databases at the newest migration on a test PostgreSQL server, reused from test to test.

Every in-process test on PostgreSQL wants a database of its own at the newest migration. Made by
``CREATE DATABASE ... TEMPLATE`` and removed by ``DROP DATABASE`` that costs 50 ms quiet and
100-150 ms on a loaded machine, a fifth of the in-process tiers' time; emptied by ``DELETE`` it
costs a few milliseconds. So a released database is emptied and handed to the next test, but
only when nothing of the test can remain in it:

- no other session is connected to it (a test that left an engine open);
- its schema is the template's, table by table and column by column, with the same revision
  in ``alembic_version`` and no other schema, function, trigger or database-level setting;
- the planner knows no more about it than about the template: no table or index analysed or
  vacuumed since (``pg_class.reltuples``, no column statistics in ``pg_stats``), by a test or
  by autovacuum during a long test. Statistics left from an earlier test's rows changed the
  plans a later test saw (a batch statement's plan, checked by test_refresh_batch, once);
- it still accepts connections (``ALLOW_CONNECTIONS``).

Otherwise it is dropped (``WITH (FORCE)``) and the next test gets a new copy of the template.
Emptying deletes every row of every table but ``alembic_version`` and restarts every sequence
at its start, so a reused database reads (and plans) exactly as a fresh copy of the template
(which holds no rows but its revision: checked when the pool starts)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

from tests.support.postgres import PostgresServer

# Everything a test could change in the database's structure, as one string to compare.
_SIGNATURE = """
SELECT concat_ws(' | ',
  (SELECT string_agg(c.relname || ':' || c.relkind::text || ':' || c.reltuples::text || ':'
                     || coalesce(cols.list, ''), ',' ORDER BY c.relname)
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN LATERAL (
       SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
                         ',' ORDER BY a.attnum) AS list
         FROM pg_attribute a
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) cols ON true
    WHERE n.nspname = 'public'),
  (SELECT string_agg(version_num, ',' ORDER BY version_num) FROM public.alembic_version),
  (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
  (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public')::text,
  (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)::text,
  (SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
    WHERE d.datname = current_database())::text,
  (SELECT count(*) FROM pg_stats WHERE schemaname = 'public')::text
)
"""
_OTHER_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
_TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'"
    " ORDER BY 1"
)
_SEQUENCES = (
    "SELECT c.oid::regclass::text, s.seqstart FROM pg_sequence s"
    " JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public'"
)


class SchemaPool:
    """Databases copied from ``template`` on ``server``: :meth:`acquire` one per test (a name),
    :meth:`release` it after (emptied for the next, or dropped). Thread-safe."""

    def __init__(self, server: PostgresServer, template: str) -> None:
        self.server = server
        self.template = template
        self._free: list[str] = []
        self._lock = threading.Lock()
        with self._connect(template) as conn:
            self._signature = _one(conn, _SIGNATURE)
            # Read once: a database whose signature matches has these tables and sequences,
            # and a reused one restarts each sequence where the template's starts.
            self._tables: list[str] = _column(conn, _TABLES)
            self._sequences: list[tuple[str, int]] = list(conn.execute(_SEQUENCES.encode()))
            for table in self._tables:
                if _one(conn, f'SELECT count(*) FROM "{table}"') != 0:
                    raise RuntimeError(f"the template holds rows in {table}: not reusable")
        self.reused = 0
        self.dropped = 0

    def _connect(self, dbname: str) -> Any:
        import psycopg

        return psycopg.connect(self.server.url_for(dbname), autocommit=True, connect_timeout=10)

    def acquire(self) -> str:
        with self._lock:
            if self._free:
                return self._free.pop()
        name = f"t_{uuid.uuid4().hex[:20]}"
        self.server.create_database(name, template=self.template)
        return name

    def release(self, name: str) -> None:
        if self._emptied(name):
            with self._lock:
                self._free.append(name)
                self.reused += 1
            return
        self.dropped += 1
        self.server.drop_database(name)

    def _emptied(self, name: str) -> bool:
        """Empty ``name`` for the next test when that leaves it as a fresh copy; False (nothing
        done) when it cannot be reused."""
        try:
            conn = self._connect(name)
        except Exception:  # ALLOW_CONNECTIONS false, renamed, dropped by the test, ...
            return False
        with contextlib.closing(conn):
            try:
                if _one(conn, _OTHER_SESSIONS) != 0 or _one(conn, _SIGNATURE) != self._signature:
                    return False
                with conn.transaction():
                    for table in self._tables:
                        conn.execute(f'DELETE FROM "{table}"'.encode())
                    for sequence, start in self._sequences:
                        conn.execute("SELECT setval(%s::regclass, %s, false)", (sequence, start))
            except Exception:
                return False
        return True


def _one(conn: Any, query: str) -> Any:
    return conn.execute(query.encode()).fetchone()[0]


def _column(conn: Any, query: str) -> list[Any]:
    return [row[0] for row in conn.execute(query.encode()).fetchall()]
