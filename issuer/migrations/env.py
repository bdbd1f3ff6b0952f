"""Alembic environment for the issuer's schema (issuer.db.metadata).

Normally run through ``issuer.db.init_schema`` / ``issuer db upgrade``, which pass an open
connection (``config.attributes["connection"]``) already holding the migration lock. Run by the
``alembic`` command instead, the database comes from ISSUER_DATABASE_URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from issuer.db import metadata
from issuer.engines import make_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE via copy on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("ISSUER_DATABASE_URL", "sqlite:///var/issuer.db")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("issuer migrations run online only (they need a database connection)")
run_migrations_online()
