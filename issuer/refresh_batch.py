"""PostgreSQL: the refresh grant's common rotations of one event-loop turn as one statement.

Under load the token endpoint finds many refresh requests ready at once. Each used to hop to a
worker thread, check a connection out of SQLAlchemy's pool and run its own statement; measured
on the issuer under bench scenario 9 (PostgreSQL, one replica, 32 connections), that hop and the
round trip cost the issuer ~650 us of CPU and PostgreSQL ~370 us a refresh. :class:`RotationBatch`
runs on the event loop instead, with psycopg's asyncio connections of its own (autocommit: one
statement is atomic), and gathers every rotation asked for while a statement is in flight into
the next one (``unnest`` of arrays, :data:`ROTATE_BATCH`). Scenario 9 (2026-12-03, alternated
runs on one quiet machine): 0.33 of raw RSA signing before, 0.53 after; PostgreSQL's share of
the server core fell from 23% to 13% while the issuer answered nearly twice the requests.

The statement claims a token exactly as the transaction path does (issuer/refresh.py): the
conditional ``UPDATE ... WHERE used_at IS NULL`` stays the only arbiter, and it also requires
what that path's ``narrow`` checks first (the user exists and is enabled; requested scopes lie
within the grant's). A rotation it claims nothing for (unknown, expired, revoked, reused, another
client's, another DPoP key's, a disabled user, scopes beyond the grant; or the same token twice
in one batch: one claims it) comes back as None, having changed nothing, and the caller runs the
transaction path, which decides and answers as it always did.

A database error fails every rotation of its batch with SQLAlchemy's ``DBAPIError`` (the
parameters hidden), like any statement, so issuer/outage.py answers 503 during an outage; a
broken connection is closed and a new one made on the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import Engine

from issuer.engines import PING_IDLE_AFTER, has_input, pg_connect_args, wrap_driver_error

# One batch's rotations at most: a statement of 64 rotations takes a few milliseconds.
MAX_BATCH = 64
# Statements in flight at once, each on a connection of its own (PostgreSQL backends besides
# the engine's pool: size max_connections for them). Two keep one batch gathering while the
# other runs; more only split the same requests into smaller batches.
CONNECTIONS = 2

# These connections run nothing but ROTATE_BATCH, which must look each presented token up by its
# primary key: a planner that believes the table small (no ANALYZE yet on a young database, the
# bench's case) otherwise chose a sequential scan, 60 ms for 16 rotations among 3,000 rows
# against 1.8 ms by the index (EXPLAIN ANALYZE, PostgreSQL 15).
PLANNER_SETTINGS = "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off"

ROTATE_BATCH = """
WITH presented AS (
    SELECT * FROM unnest(
        %(ids)s::int[], %(digests)s::text[], %(client_ids)s::text[], %(nows)s::float8[],
        %(new_hashes)s::text[], %(audiences)s::text[], %(scopes)s::text[],
        %(idle_ends)s::float8[], %(jkts)s::text[]
    ) AS p(id, digest, client_id, now, new_hash, new_audience, new_scopes, idle_end, proof_jkt)
), claimed AS (
    UPDATE refresh_tokens AS r SET used_at = p.now
    FROM presented AS p
    WHERE r.token_hash = p.digest AND r.client_id = p.client_id AND r.used_at IS NULL
      AND r.revoked_at IS NULL AND r.expires_at > p.now
      AND (r.jkt IS NULL OR r.jkt = p.proof_jkt)
      AND (p.new_scopes IS NULL
           OR string_to_array(r.scopes, ' ') @> string_to_array(p.new_scopes, ' '))
      AND EXISTS (SELECT 1 FROM users WHERE users.user_id = r.user_id AND NOT users.disabled)
    RETURNING p.id, p.now, p.new_hash, p.new_audience, p.new_scopes, p.idle_end, r.token_hash,
        r.family_id, r.client_id, r.user_id, r.scopes, r.audience, r.expires_at,
        r.family_expires_at, r.sid, r.jkt
), successor AS (
    INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes, audience,
        created_at, expires_at, family_expires_at, used_at, revoked_at, parent_hash, sid, jkt)
    SELECT new_hash, family_id, client_id, user_id, COALESCE(new_scopes, scopes),
        COALESCE(new_audience, audience), now, LEAST(idle_end, family_expires_at),
        family_expires_at, NULL, NULL, token_hash, sid, jkt
    FROM claimed
    RETURNING token_hash, scopes, audience
)
SELECT claimed.id, claimed.family_id, claimed.client_id, claimed.user_id, claimed.scopes,
    claimed.audience, claimed.expires_at, claimed.family_expires_at, claimed.sid, claimed.jkt,
    successor.scopes AS new_scopes, successor.audience AS new_audience
FROM claimed JOIN successor ON successor.token_hash = claimed.new_hash
"""


@dataclass(frozen=True)
class Rotation:
    """One rotation asked for: the presented token's hash, its successor's, and what the
    successor gets (``scopes``: space-separated, None keeps the grant's; ``audience``: None keeps
    the grant's)."""

    digest: str
    client_id: str
    now: float
    new_hash: str
    idle_end: float
    scopes: str | None = None
    audience: str | None = None
    jkt: str | None = None


async def connect(engine: Engine) -> psycopg.AsyncConnection[Any]:
    """A connection of the batch's own to ``engine``'s database: psycopg's asyncio connection,
    autocommit, the URL's parameters and connect timeout, the planner settings."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # SQLAlchemy's adapters: none needed here
    params.update(pg_connect_args(engine.url.render_as_string()))
    conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
    await conn.execute(PLANNER_SETTINGS)
    return conn


Connect = Callable[[Engine], Awaitable[Any]]  # connect's signature: the seam for tests


class RotationBatch:
    """``await rotate(rotation)``: the row the statement returned for it (the grant's columns,
    ``new_scopes``, ``new_audience``), or None when it claimed nothing.

    Bound to the event loop of its first call; from another loop (a second test client, say)
    every call answers None, so the caller takes the transaction path.
    """

    def __init__(self, engine: Engine, *, connect: Connect = connect) -> None:
        self._engine = engine
        self._connect = connect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Rotation, asyncio.Future[dict[str, Any] | None]]] = []
        # Connections not in use, each with the moment it came back (time.monotonic).
        self._idle: list[tuple[Any, float]] = []
        self._busy = 0  # statements in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def rotate(self, rotation: Rotation) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        if loop is not self._loop or self._closed:
            return None
        future: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._pending.append((rotation, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        """Send what is pending as one statement, when a connection is free; a statement that
        ends starts the next batch."""
        if not self._pending or self._busy >= CONNECTIONS:
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: list[tuple[Rotation, asyncio.Future[dict[str, Any] | None]]]
    ) -> None:
        try:
            rows = await self._execute(_parameters([rotation for rotation, _ in batch]))
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):  # the loop is shutting down
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for i, (_, future) in enumerate(batch):
                if not future.done():  # a request gone meanwhile: its rotation stands
                    future.set_result(rows.get(i))
        finally:
            self._busy -= 1
            if self._pending:
                self._start()

    async def _execute(self, params: dict[str, list[Any]]) -> dict[int, dict[str, Any]]:
        """Run one batch; a driver error is raised as SQLAlchemy's (:func:`wrap_driver_error`),
        ``connection_invalidated`` when the session was lost (the connection is closed)."""
        try:
            conn = await self._checkout()
        except psycopg.Error as exc:
            raise wrap_driver_error(self._engine, ROTATE_BATCH, params, exc) from exc
        try:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(ROTATE_BATCH, params)
            found = {int(row.pop("id")): row for row in await cursor.fetchall()}
        except psycopg.Error as exc:
            lost = bool(conn.broken)
            await conn.close()
            raise wrap_driver_error(self._engine, ROTATE_BATCH, params, exc, dropped=lost) from exc
        except BaseException:
            await conn.close()
            raise
        if self._closed:
            await conn.close()
        else:
            self._idle.append((conn, time.monotonic()))
        return found

    async def _checkout(self) -> Any:
        """An idle connection, pinged first when it may have died unseen (idle longer than
        PING_IDLE_AFTER, or the server has said something: a restart's goodbye), as the
        engine's pool does (issuer/engines.py ``ping_when_idle``); else a new one. So the first
        batch after a database restart finds a live session rather than failing."""
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since <= PING_IDLE_AFTER and not has_input(conn):
                return conn
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:
                await conn.close()
                continue
            return conn
        return await self._connect(self._engine)

    async def aclose(self) -> None:
        """Wait for the statements in flight, then close the connections."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        idle, self._idle = self._idle, []
        for conn, _since in idle:
            await conn.close()


def _parameters(rotations: list[Rotation]) -> dict[str, list[Any]]:
    return {
        "ids": list(range(len(rotations))),
        "digests": [r.digest for r in rotations],
        "client_ids": [r.client_id for r in rotations],
        "nows": [r.now for r in rotations],
        "new_hashes": [r.new_hash for r in rotations],
        "audiences": [r.audience for r in rotations],
        "scopes": [r.scopes for r in rotations],
        "idle_ends": [r.idle_end for r in rotations],
        "jkts": [r.jkt for r in rotations],
    }
