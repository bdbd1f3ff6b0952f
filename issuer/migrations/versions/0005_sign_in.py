"""Sign-in for people (issue 16): client redirect URIs, public and first-party clients, the
session a refresh-token family started from, and the tables of issuer sessions, consents,
authorization codes and revoked access tokens.

Existing rows keep working: the new client columns have defaults (no redirect URIs, confidential,
not first-party: exactly what every client registered before was), ``refresh_tokens.sid`` is
nullable (families from the password grant have no session). Idempotent like 0002-0004: a
database adopted from the create_all era keeps what it already has.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SID_INDEX = "ix_refresh_tokens_sid"
CLIENT_COLUMNS = ("redirect_uris", "post_logout_redirect_uris", "public", "first_party")
NEW_TABLES = ("login_sessions", "consents", "authorization_codes", "revoked_access_tokens")


def _client_column(name: str) -> sa.Column[object]:
    if name in ("redirect_uris", "post_logout_redirect_uris"):
        return sa.Column(name, sa.Text, nullable=False, server_default="")
    return sa.Column(name, sa.Boolean, nullable=False, server_default=sa.false())


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = {c["name"] for c in inspector.get_columns("clients")}
    for name in CLIENT_COLUMNS:
        if name not in have:  # with a server default: a plain ADD COLUMN on both databases
            op.add_column("clients", _client_column(name))
    if "sid" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}:
        op.add_column("refresh_tokens", sa.Column("sid", sa.String(64), nullable=True))
    if SID_INDEX not in {i["name"] for i in inspector.get_indexes("refresh_tokens")}:
        op.create_index(SID_INDEX, "refresh_tokens", ["sid"])
    if not inspector.has_table("login_sessions"):
        op.create_table(
            "login_sessions",
            sa.Column("sid", sa.String(64), primary_key=True),
            sa.Column("cookie_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("user_id", sa.String(64), nullable=False),
            sa.Column("auth_time", sa.Float, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("last_seen_at", sa.Float, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Column("ended_at", sa.Float, nullable=True),
        )
        op.create_index("ix_login_sessions_user", "login_sessions", ["user_id"])
        op.create_index("ix_login_sessions_expires", "login_sessions", ["expires_at"])
    if not inspector.has_table("consents"):
        op.create_table(
            "consents",
            sa.Column("user_id", sa.String(64), primary_key=True),
            sa.Column("client_id", sa.String(128), primary_key=True),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("audiences", sa.Text, nullable=False),
            sa.Column("granted_at", sa.Float, nullable=False),
        )
    if not inspector.has_table("authorization_codes"):
        op.create_table(
            "authorization_codes",
            sa.Column("code_hash", sa.String(64), primary_key=True),
            sa.Column("client_id", sa.String(128), nullable=False),
            sa.Column("redirect_uri", sa.Text, nullable=False),
            sa.Column("code_challenge", sa.String(128), nullable=False),
            sa.Column("user_id", sa.String(64), nullable=False),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("audience", sa.String(200), nullable=False),
            sa.Column("nonce", sa.Text, nullable=True),
            sa.Column("sid", sa.String(64), nullable=False),
            sa.Column("auth_time", sa.Float, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Column("redeemed_at", sa.Float, nullable=True),
            sa.Column("family_id", sa.String(64), nullable=True),
            sa.Column("access_jti", sa.String(64), nullable=True),
            sa.Column("access_expires_at", sa.Float, nullable=True),
            sa.Column("replayed_at", sa.Float, nullable=True),
        )
        op.create_index("ix_authorization_codes_expires", "authorization_codes", ["expires_at"])
        op.create_index("ix_authorization_codes_family", "authorization_codes", ["family_id"])
    if not inspector.has_table("revoked_access_tokens"):
        op.create_table(
            "revoked_access_tokens",
            sa.Column("jti", sa.String(64), primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=False),
        )
        op.create_index("ix_revoked_access_tokens_expires", "revoked_access_tokens", ["expires_at"])


def downgrade() -> None:
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    op.drop_index(SID_INDEX, table_name="refresh_tokens")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("sid")
    with op.batch_alter_table("clients") as batch:
        for name in reversed(CLIENT_COLUMNS):
            batch.drop_column(name)
