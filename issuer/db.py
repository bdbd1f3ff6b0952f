"""Storage: SQLAlchemy Core tables and the engine (SQLite by default, PostgreSQL for replicas)."""

from __future__ import annotations

import fcntl
import logging
import select
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, InvalidatePoolError

from shared.errors import ConfigurationError

metadata = MetaData()

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_key", LargeBinary, nullable=False),  # AES-GCM sealed PKCS#8 PEM
    Column("public_jwk", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("publish_at", Float, nullable=False),
    Column("activate_at", Float, nullable=False),
    Column("retire_at", Float, nullable=True),
    Column("remove_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

# One row per decided change of the signing key ("rotate:<kid>", "revoke:<kid>", "initial", ...).
# The primary key is the guard that makes two issuer processes deciding the same change at the
# same moment create one key, not two: the second INSERT conflicts (SQLite and PostgreSQL alike).
key_rotations = Table(
    "key_rotations",
    metadata,
    Column("slot", String(200), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    Column("grant_types", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audience", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("family_expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    # The hash of the token this one succeeded (NULL: the login's first token, or rotated before
    # migration 0004). Finds a redeemed token's successor for the replay grace (issuer/refresh.py).
    Column("parent_hash", String(64), nullable=True),
    Index("ix_refresh_tokens_family", "family_id"),
    Index("ix_refresh_tokens_user", "user_id"),
    Index("ix_refresh_tokens_parent", "parent_hash"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("client_id", String(128), nullable=True),
    Column("subject", String(200), nullable=True),
    Column("address", String(64), nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_events_at", "at"),
)

# Failed authentication attempts, one row each, for throttling (issuer/throttle.py). Kept in the
# database so every replica sees the same counts. ``key_hash`` is a SHA-256 of "kind:value"
# (client_id, username or address): nothing typed by a caller is stored in clear.
auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_auth_failures_key_at", "key_hash", "at"),
    Index("ix_auth_failures_at", "at"),
)


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
    engine = create_engine(url, connect_args=_pg_connect_args(url), **pool)
    ping_when_idle(engine)
    return engine


def execute_autocommit(
    engine: Engine, statement: str, params: Mapping[str, Any]
) -> dict[str, Any] | None:
    """PostgreSQL: run one ``statement`` (psycopg's ``%(name)s`` parameters) on a pooled
    connection outside a transaction block (a single statement is atomic) and return its first
    row as a dict, or None. For the refresh grant's one-statement rotation: SQLAlchemy's
    execution layers cost more CPU there than psycopg and the statement (measured here: 236 us
    against 96 us a call). Errors are SQLAlchemy's ``DBAPIError`` like any statement's, the
    parameters hidden; a dropped connection is invalidated and the error says so
    (``connection_invalidated``), so issuer/outage.py answers a 503 as for any statement.
    """
    dialect = engine.dialect
    pooled = engine.raw_connection()  # the pool's checkout, its errors already wrapped
    driver: Any = pooled.driver_connection
    try:
        driver.autocommit = True
        try:
            cursor = driver.execute(statement, params)
            row = cursor.fetchone()
            names = [column.name for column in cursor.description or ()]
        finally:
            if not driver.closed:
                driver.autocommit = False
    except dialect.loaded_dbapi.Error as exc:
        dropped = dialect.is_disconnect(exc, driver, None)
        if dropped:
            pooled.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=dropped,
            dialect=dialect,
        ) from exc
    finally:
        pooled.close()
    return dict(zip(names, row, strict=True)) if row is not None else None


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
        if monotonic() - since <= idle_after and not _has_input(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError("a pooled connection was dropped") from exc
            raise

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _has_input(dbapi_connection: Any) -> bool:
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


def _pg_connect_args(url: str, timeout: int = CONNECT_TIMEOUT) -> dict[str, Any]:
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
    return create_engine(url, connect_args=_pg_connect_args(url, PROBE_CONNECT_TIMEOUT), **pool)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# Tables that exist in every database created before migrations (the create_all era): their
# presence without an alembic_version table means "adopt": stamp INITIAL_REVISION, then upgrade.
INITIAL_REVISION = "0001"
_PRE_MIGRATION_TABLES = ("signing_keys", "clients", "users", "refresh_tokens")
# Key for pg_advisory_xact_lock: serialises schema upgrades across processes on one database.
_MIGRATION_LOCK_KEY = 0x4B4559484F555345  # "KEYHOUSE"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for issuer/migrations (optionally bound to an open connection)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the cross-process migration lock.

    PostgreSQL: a transaction-scoped advisory lock (DDL is transactional there, so a concurrent
    starter waits, then finds the schema at head). SQLite: an exclusive flock on a file next to
    the database (in-memory databases need none).
    """
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    with ExitStack() as stack:
        if path and path != ":memory:":
            handle = stack.enter_context(Path(f"{path}.migrate.lock").open("a"))
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        conn = stack.enter_context(engine.begin())
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        yield conn


def init_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration (``alembic upgrade head``), keeping the data.

    Idempotent and safe to run from several processes at once (see ``_migration_lock``). A
    database created by create_all before migrations existed is adopted: stamped at
    INITIAL_REVISION, then upgraded.
    """
    # Alembic logs every step at INFO; the CLI's stderr carries one-line errors only.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _migration_lock(engine) as conn:
        inspector = inspect(conn)
        config = alembic_config(conn)
        if not inspector.has_table("alembic_version") and all(
            inspector.has_table(t) for t in _PRE_MIGRATION_TABLES
        ):
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration this code knows (what ``init_schema`` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the migrations directory ships with the package
        raise ConfigurationError("the issuer's migrations are missing")
    return head


def _known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def describe_database(database_url: str) -> str:
    """How an operator recognises the database in a message: a SQLite file's absolute path, a
    PostgreSQL URL without its password."""
    url = engine_url(database_url)
    path = sqlite_path(url)
    if path is not None:
        return str(path.absolute())
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


class StoreNotFound(ConfigurationError):
    """The configured database does not exist (SQLite) or holds no current Keyhouse schema."""


_CREATE_HINT = "create it with `issuer init` (or `issuer serve`)"


def open_store(database_url: str, *, pool_size: int = 10) -> Engine:
    """An engine on an existing database whose schema is at the newest revision, for every
    command but ``issuer init`` and ``issuer serve``: those alone create or migrate a store.

    A missing SQLite file is never created (nor its folder); a PostgreSQL database (which must
    exist anyway) without the Keyhouse schema, or at an older revision, is refused unmigrated.
    Raises :class:`StoreNotFound` with one line naming the database.
    """
    where = describe_database(database_url)
    path = sqlite_path(engine_url(database_url))
    if path is not None and not path.is_file():
        raise StoreNotFound(
            f"no issuer database at {where} (ISSUER_DATABASE_URL={database_url}): {_CREATE_HINT}"
        )
    engine = make_engine(database_url, pool_size=pool_size)
    try:
        try:
            conn = engine.connect()
        except DatabaseError as exc:  # unreachable server, bad password, not a SQLite file
            reason = str(exc.orig or exc).strip().splitlines()[0].replace('"', "'")
            raise StoreNotFound(f"cannot open the database {where}: {reason}") from None
        with conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            legacy = revision is None and all(
                inspect(conn).has_table(t) for t in _PRE_MIGRATION_TABLES
            )
        head = head_revision()
        if revision == head:
            return engine
        if revision is None and not legacy:
            problem = f"the database {where} holds no issuer schema: {_CREATE_HINT}"
        elif revision is None or _known_revision(revision):
            problem = (
                f"the database {where} is at schema revision {revision or 'none (pre-migration)'}"
                f", this issuer needs {head}: upgrade it with `issuer init` (or `issuer serve`)"
            )
        else:
            problem = (
                f"the database {where} is at schema revision {revision}, unknown to this issuer "
                "(migrated by a newer Keyhouse?)"
            )
    except BaseException:
        engine.dispose()
        raise
    engine.dispose()
    raise StoreNotFound(problem)


def create_store(database_url: str, *, pool_size: int = 10) -> tuple[Engine, str | None, bool]:
    """For ``issuer init`` and ``issuer serve``: create the SQLite file (and its folder) if it is
    missing and bring the schema to head. Returns the engine, the revision the database was at
    before (None: no schema) and whether the SQLite file was created here."""
    path = sqlite_path(engine_url(database_url))
    created = path is not None and not path.exists()
    engine = make_engine(database_url, pool_size=pool_size)
    try:
        before = schema_revision(engine)
        init_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine, before, created
