"""Database outages: which errors mean "the database is unreachable", and one log line each.

:func:`unavailability` tells a real outage (connection refused or lost, the server shutting down
or starting up, too many connections, no pooled connection free in time, a SQLite file locked
past its busy timeout or impossible to open) from every other database error (a missing table,
a constraint, a bug), which stays a 500. :class:`DatabaseOutage` is the issuer's one record of
whether the database is down: the first failure of an outage logs one warning, the first
success after it one info line, whichever of the requests, the readiness probe and the key
reload loop meets them. Nothing here knows HTTP.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.errors import TemporarilyUnavailable

logger = logging.getLogger("keyhouse.issuer")

# PostgreSQL SQLSTATEs that mean "not reachable now" (Appendix A of its manual): class 08
# (connection exception) and these.
_PG_UNAVAILABLE_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is shutting down
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or in recovery
        "53300",  # too_many_connections
    }
)
# SQLite result codes (sqlite3 exceptions' ``sqlite_errorname``; extended codes start with these).
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")
# A URL's credentials, should a driver ever quote one in a message.
_CREDENTIALS = re.compile(r"://[^@/\s]*@")


def unavailability(exc: BaseException) -> str | None:
    """Why ``exc`` means the database cannot be reached now (a short reason, no secret), or
    None when it is some other failure."""
    if isinstance(exc, PoolTimeout):
        return "no database connection became free in time"
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    reason = _first_line(orig if orig is not None else exc)
    if exc.connection_invalidated:  # SQLAlchemy's dialect saw the connection drop
        return reason
    sqlstate = getattr(orig, "sqlstate", _MISSING)
    if sqlstate is not _MISSING:  # psycopg
        if sqlstate is None:
            # No server answer at all: libpq failed to connect, or lost the connection.
            return reason if isinstance(exc, SAOperationalError) else None
        state = str(sqlstate)
        return reason if state.startswith("08") or state in _PG_UNAVAILABLE_STATES else None
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith(_SQLITE_UNAVAILABLE):
        return reason
    return None


_MISSING = object()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else type(exc).__name__
    return _CREDENTIALS.sub("://***@", line)[:200]


class DatabaseOutage:
    """Whether the database is down, as the last observation said; logs each change once.

    Thread-safe: requests (in worker threads and on the event loop), the readiness probe and the
    key reload loop all report to the same instance.
    """

    def __init__(
        self, *, retry_after: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.retry_after = retry_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current outage was first seen
        self.reason: str | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, reason: str) -> None:
        """An operation met an outage (``reason`` from :func:`unavailability`)."""
        with self._lock:
            self.reason = reason
            if self._since is not None:
                return
            self._since = self._monotonic()
        logger.warning(
            "database unavailable: %s; answering 503 temporarily_unavailable until it is back",
            reason,
        )

    def succeeded(self) -> None:
        """An operation reached the database."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since, self.reason = self._since, None, None
        if since is not None:
            logger.info(
                "database reachable again after %.1f s of outage", self._monotonic() - since
            )

    def error_for(self, exc: SQLAlchemyError) -> TemporarilyUnavailable | None:
        """The 503 to answer for ``exc`` when it is an outage (recorded here), else None."""
        reason = unavailability(exc)
        if reason is None:
            return None
        self.failed(reason)
        return TemporarilyUnavailable(
            "the database is unavailable; retry later", retry_after=self.retry_after
        )
