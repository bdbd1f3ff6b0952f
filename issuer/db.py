"""Storage: SQLAlchemy Core tables and the engine (SQLite by default, PostgreSQL for replicas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
)
from sqlalchemy.engine import Engine

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
    Index("ix_refresh_tokens_family", "family_id"),
    Index("ix_refresh_tokens_user", "user_id"),
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


def make_engine(database_url: str) -> Engine:
    url = engine_url(database_url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def init_schema(engine: Engine) -> None:
    """Create missing tables. Idempotent, safe to run from several processes."""
    metadata.create_all(engine, checkfirst=True)
