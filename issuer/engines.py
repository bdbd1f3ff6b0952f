"""Engines and connections: documented URL forms to SQLAlchemy URLs, the bounded pool with its
idle-only ping, the readiness probe's engine, SQLite pragmas, and a driver's error as SQLAlchemy
raises it (for the refresh grant's own psycopg connections, issuer/refresh_batch.py). The tables
and the store live in :mod:`issuer.db`."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, StatementError

from shared.errors import ConfigurationError


def engine_url(database_url: str) -> str:
    """Map the documented URL forms to SQLAlchemy driver URLs (psycopg 3 for PostgreSQL)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + database_url.split("://", 1)[1]
    if database_url.startswith(("sqlite:///", "postgresql+psycopg://")):
        return database_url
    raise ConfigurationError(
        "ISSUER_DATABASE_URL must start with sqlite:/// or postgresql://, "
        f"got {database_url.split(':', 1)[0]!r}"
    )


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///PATH`` URL names (None for any other URL)."""
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


# Seconds a request waits for a free pooled connection before failing.
POOL_TIMEOUT = 30.0


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    """An engine whose pool holds at most ``pool_size`` connections (no overflow).

    The bound is what an operator sizes PostgreSQL's ``max_connections`` by (replicas x
    workers x pool size). It is safe only because no code path holds one connection while
    asking for another: requests beyond the pool wait their turn instead of deadlocking.
    """
    url = engine_url(database_url)
    # hide_parameters: a statement's bound values (a username, a token's hash) stay out of
    # database exceptions, which are logged with their message.
    pool = {
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_timeout": POOL_TIMEOUT,
        "hide_parameters": True,
    }
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise ConfigurationError("ISSUER_DATABASE_URL must name a SQLite file, not :memory:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # The connect timeout bounds a request's wait on an unreachable host (a URL's own
    # connect_timeout wins); the idle ping replaces a pooled connection the server dropped.
    engine = create_engine(url, connect_args=pg_connect_args(url), **pool)
    ping_when_idle(engine)
    return engine


def wrap_driver_error(
    engine: Engine,
    statement: str,
    params: Mapping[str, Any],
    exc: Exception,
    *,
    dropped: bool = False,
) -> StatementError:
    """The driver's ``exc`` as SQLAlchemy raises it for any statement: ``DBAPIError`` (its
    OperationalError etc.), the parameters hidden, ``connection_invalidated`` when dropped; so
    issuer/outage.py tells an outage from other failures as for any statement."""
    dialect = engine.dialect
    return DBAPIError.instance(
        statement,
        params,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=dropped,
        dialect=dialect,
    )


# A pooled connection idle longer than this is pinged before use (seconds).
PING_IDLE_AFTER = 1.0
_IDLE_SINCE = "keyhouse_idle_since"


def ping_when_idle(
    engine: Engine,
    *,
    idle_after: float = PING_IDLE_AFTER,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Ping a pooled connection on checkout only when it may have died while in the pool: it sat
    there more than ``idle_after`` seconds, or its socket has input (a server that shut down or
    ended the session has sent its last message and closed). A ping that meets a dropped
    connection invalidates the pool (every connection older than that moment is replaced) and
    the checkout gets a new connection, as ``pool_pre_ping`` does; any other error is raised.

    ``pool_pre_ping`` pings on every checkout, one round trip per transaction; a busy issuer's
    connections come back to the pool many times a second, so this pings almost never under
    load. A connection that breaks in use (or in the pool within ``idle_after`` without a
    word from the server) fails its statement with a disconnect error, which SQLAlchemy turns
    into an invalidated pool, and that request into a 503 (issuer/outage.py).
    """
    dialect = engine.dialect

    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: invalidated, a new one is made on checkout
            record.info[_IDLE_SINCE] = monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None:  # a new connection
            return
        if monotonic() - since <= idle_after and not has_input(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError("a pooled connection was dropped") from exc
            raise

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def has_input(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket is readable (or closed): the server said something."""
    try:
        fd = dbapi_connection.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except Exception:  # closed or unusable: let the ping find out
        return True


# Seconds a new PostgreSQL connection may take (libpq's connect_timeout), unless the URL says.
CONNECT_TIMEOUT = 5
# The readiness probe's own bound: an answer within a couple of seconds or "not ready".
PROBE_CONNECT_TIMEOUT = 2


def pg_connect_args(url: str, timeout: int = CONNECT_TIMEOUT) -> dict[str, Any]:
    return {} if "connect_timeout" in make_url(url).query else {"connect_timeout": timeout}


def make_probe_engine(database_url: str) -> Engine:
    """One connection for the readiness probe, apart from the request pool (a busy pool does not
    make the issuer "not ready"), pre-pinged, with short timeouts. SQLite: the file is opened
    read-write and never created (a missing file is a failed probe, not a new empty database).
    """
    url = engine_url(database_url)
    pool: dict[str, Any] = {
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": PROBE_CONNECT_TIMEOUT,
        "pool_pre_ping": True,
        "hide_parameters": True,
    }
    path = sqlite_path(url)
    if path is not None:
        uri = f"sqlite:///file:{quote(str(path))}?mode=rw&uri=true"
        return create_engine(uri, connect_args={"check_same_thread": False, "timeout": 2}, **pool)
    return create_engine(url, connect_args=pg_connect_args(url, PROBE_CONNECT_TIMEOUT), **pool)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
