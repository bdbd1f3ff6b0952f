"""``/readyz``'s logic: is this issuer ready for traffic? It is when it holds a signing key and
its database answers ``SELECT 1``.

The database check runs in a worker thread on a connection of its own
(:func:`issuer.engines.make_probe_engine`), at most one at a time, and its result is kept for
:data:`CACHE_SECONDS`: a flood of probes costs one query a second. A probe that has not answered
within :data:`WAIT_SECONDS` is "not ready" (the check goes on; the next probe waits for it).
Outcomes are reported to the issuer's :class:`~issuer.outage.DatabaseOutage`, so an outage is
logged once whoever meets it first. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.engine import Engine

from issuer.outage import DatabaseOutage, unavailability
from shared.errors import KeyhouseError

logger = logging.getLogger("keyhouse.issuer")

CACHE_SECONDS = 1.0
WAIT_SECONDS = 3.0


def select_one(engine: Engine) -> Callable[[], None]:
    """The probe: one ``SELECT 1`` (blocking)."""

    def probe() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    return probe


class Readiness:
    """Answers "ready?" with None (ready) or the reason it is not."""

    def __init__(
        self,
        probe: Callable[[], None],
        signing_kid: Callable[[], str],
        outage: DatabaseOutage,
        *,
        cache_seconds: float = CACHE_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._signing_kid = signing_kid
        self._outage = outage
        self._cache_seconds = cache_seconds
        self._wait_seconds = wait_seconds
        self._monotonic = monotonic
        self._checked_at: float | None = None
        self._database: str | None = None  # the last check's reason (None: reachable)
        self._inflight: asyncio.Task[None] | None = None

    async def reason(self) -> str | None:
        """None when ready; otherwise why not (for the 503's body: no secret, no URL)."""
        try:
            self._signing_kid()
        except KeyhouseError:
            return "no signing key is available"
        return await self.database_reason()

    async def database_reason(self) -> str | None:
        now = self._monotonic()
        if self._checked_at is not None and now - self._checked_at < self._cache_seconds:
            return self._database
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._check())
        try:
            # asyncio.timeout: Python 3.11's wait_for can swallow a cancellation that arrives as
            # the check ends (the request's task cancelled, say, by a client hanging up).
            async with asyncio.timeout(self._wait_seconds):
                await asyncio.shield(self._inflight)
        except TimeoutError:
            return f"the database did not answer within {self._wait_seconds:g} s"
        return self._database

    async def _check(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._probe)
        except Exception as exc:
            why = unavailability(exc)
            if why is not None:
                self._outage.failed(why)
                self._database = f"database unavailable: {why}"
            else:  # not an outage we know: say what kind, the detail goes to the debug log
                logger.debug("readiness database check failed", exc_info=exc)
                self._database = f"database check failed: {type(exc).__name__}"
        else:
            self._outage.succeeded()
            self._database = None
        finally:
            self._checked_at = self._monotonic()
            self._inflight = None
