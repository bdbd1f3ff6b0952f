"""Storage: SQLAlchemy Core tables, creating and opening the store, schema migrations (SQLite by
default, PostgreSQL for replicas). Engines and connections are in :mod:`issuer.engines`."""

from __future__ import annotations

import fcntl
import functools
import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

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
    false,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError

from issuer.engines import engine_url, make_engine, sqlite_path
from shared.errors import ConfigurationError

if TYPE_CHECKING:  # Alembic is imported only to migrate (~0.2 s of every process start)
    from alembic.config import Config

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
    # Migration 0005 (sign-in for people): space-separated exact redirect URIs (RFC 6749 §3.1.2)
    # and post-logout redirect URIs (OIDC RP-Initiated Logout); a public client has no secret
    # (token_endpoint_auth_method none); a first-party client skips the consent page.
    Column("redirect_uris", Text, nullable=False, server_default=""),
    Column("post_logout_redirect_uris", Text, nullable=False, server_default=""),
    Column("public", Boolean, nullable=False, server_default=false()),
    Column("first_party", Boolean, nullable=False, server_default=false()),
    # Migration 0006 (DPoP, RFC 9449 §5.2): every token request must carry a DPoP proof.
    Column("dpop_bound_access_tokens", Boolean, nullable=False, server_default=false()),
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
    # The issuer session (login_sessions.sid) the family was started from (NULL: not from a
    # sign-in, or issued before migration 0005). Logout ends the families of its session.
    Column("sid", String(64), nullable=True),
    # Migration 0006: the RFC 7638 thumbprint of the DPoP key a public client's family is bound
    # to (NULL: not bound). Every successor keeps it; a refresh needs a proof by that key.
    Column("jkt", String(64), nullable=True),
    Index("ix_refresh_tokens_family", "family_id"),
    Index("ix_refresh_tokens_user", "user_id"),
    Index("ix_refresh_tokens_parent", "parent_hash"),
    Index("ix_refresh_tokens_sid", "sid"),
)

# Issuer sessions of people signed in on the login page (issuer/sessions.py). ``sid`` is public
# (it goes into tokens); the cookie's value is secret and stored only as its SHA-256.
login_sessions = Table(
    "login_sessions",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("cookie_hash", String(64), nullable=False, unique=True),
    Column("user_id", String(64), nullable=False),
    Column("auth_time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # the absolute end
    Column("ended_at", Float, nullable=True),
    Index("ix_login_sessions_user", "user_id"),
    Index("ix_login_sessions_expires", "expires_at"),
)

# A user's approval of a client's scopes and audiences (issuer/consents.py), until revoked.
consents = Table(
    "consents",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("client_id", String(128), primary_key=True),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    Column("granted_at", Float, nullable=False),
)

# Authorization codes (issuer/codes.py), stored only as their SHA-256. A redeemed code keeps
# what its redemption issued (refresh family, access token jti), so a replay can revoke them.
authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audience", String(200), nullable=False),
    Column("nonce", Text, nullable=True),
    Column("sid", String(64), nullable=False),
    Column("auth_time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("redeemed_at", Float, nullable=True),
    Column("family_id", String(64), nullable=True),
    Column("access_jti", String(64), nullable=True),
    Column("access_expires_at", Float, nullable=True),
    Column("replayed_at", Float, nullable=True),  # first presented again (what it issued revoked)
    Index("ix_authorization_codes_expires", "expires_at"),
    Index("ix_authorization_codes_family", "family_id"),
)

# Access tokens revoked before their ``exp`` (a replayed authorization code's first tokens):
# introspection and /userinfo refuse them. Rows past ``expires_at`` are purged.
revoked_access_tokens = Table(
    "revoked_access_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_revoked_access_tokens_expires", "expires_at"),
)

# Security Event Tokens for the resource services (issuer/events/): claims stored unsigned, signed
# when served. ``seq`` orders the stream (SSE ids); rows go once past ``expires_at``.
security_events = Table(
    "security_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("jti", String(128), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("claims", Text, nullable=False),
    Index("ix_security_events_expires", "expires_at"),
    sqlite_autoincrement=True,  # ids never reused, even once every row is purged
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


# Tables that exist in every database created before migrations (the create_all era): their
# presence without an alembic_version table means "adopt": stamp INITIAL_REVISION, then upgrade.
INITIAL_REVISION = "0001"
_PRE_MIGRATION_TABLES = ("signing_keys", "clients", "users", "refresh_tokens")
# Key for pg_advisory_xact_lock: serialises schema upgrades across processes on one database.
_MIGRATION_LOCK_KEY = 0x4B4559484F555345  # "KEYHOUSE"


MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for issuer/migrations (optionally bound to an open connection)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
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
        # Already at head (every start but the first): one query, not Alembic's upgrade, which
        # reads and compiles every migration script each time (~20 ms a start).
        if _current_revision(conn) == head_revision():
            return
        from alembic import command

        inspector = inspect(conn)
        config = alembic_config(conn)
        if not inspector.has_table("alembic_version") and all(
            inspector.has_table(t) for t in _PRE_MIGRATION_TABLES
        ):
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")


def _current_revision(conn: Connection) -> str | None:
    """What ``alembic_version`` holds (None: no such table, or empty), read as Alembic reads it
    but without importing Alembic; several rows (branches, never made here) come back joined."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = sorted(
        str(r) for r in conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
    )
    return ",".join(rows) or None


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return _current_revision(conn)


# A migration script's own two lines: ``revision: str = "0007"`` and ``down_revision: ...``
# (either quote: script.py.mako writes them with repr(), ruff format with double quotes).
_REVISION_LINE = re.compile(
    r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:["'](\w+)["']|None)\s*$""", re.M
)


def _revision_graph() -> dict[str, str | None]:
    """Every migration script's revision and the one it follows, from the scripts' text (the
    head is needed at every start; Alembic's loader compiles every script for it)."""
    graph: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS / "versions").glob("[0-9]*.py")):
        found = {m.group(1): m.group(2) for m in _REVISION_LINE.finditer(script.read_text())}
        if "revision" not in found or found["revision"] is None or "down_revision" not in found:
            raise ConfigurationError(
                f"{script.name}: no `revision = ...` and `down_revision = ...`"
            )
        graph[found["revision"]] = found["down_revision"]
    return graph


@functools.cache
def head_revision() -> str:
    """The newest migration this code knows (what ``init_schema`` brings a database to); read
    once per process (the migrations ship with the code). Exactly one head, or no start."""
    graph = _revision_graph()
    heads = sorted(set(graph) - {down for down in graph.values() if down is not None})
    if len(heads) != 1:
        raise ConfigurationError(f"the issuer's migrations must have one head, found {heads}")
    return heads[0]


def _known_revision(revision: str) -> bool:
    return revision in _revision_graph()


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
            revision = _current_revision(conn)
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
