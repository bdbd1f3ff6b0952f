"""refresh_tokens.parent_hash: the token each refresh token succeeded (issue 15).

Lets the issuer find a redeemed token's successor, for the replay grace
(ISSUER_REFRESH_REPLAY_GRACE, issuer/refresh.py). Nullable: rows rotated before this migration
have no parent, and their replays are reuse as before. Idempotent like 0002 and 0003: a database
adopted from the create_all era (made by code that already had the column) is left as it is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-02-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_refresh_tokens_parent"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "parent_hash" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}:
        # A nullable column without a default: a plain ADD COLUMN on SQLite and PostgreSQL alike.
        op.add_column("refresh_tokens", sa.Column("parent_hash", sa.String(64), nullable=True))
    if INDEX not in {i["name"] for i in inspector.get_indexes("refresh_tokens")}:
        op.create_index(INDEX, "refresh_tokens", ["parent_hash"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="refresh_tokens")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("parent_hash")
