"""security_events: Security Event Tokens pushed to resource services (issue 17 §2).

One row per event, its claims unsigned (they are signed when served, with the key that signs
then). ``seq`` is the stream's event id (SSE ``id``, ``Last-Event-ID``); ``jti`` the SET's.
Rows are purged past ``expires_at`` (the latest ``exp`` the event covers, plus a margin).
Idempotent like 0002-0006.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("security_events"):
        return
    op.create_table(
        "security_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("jti", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("claims", sa.Text, nullable=False),
        sqlite_autoincrement=True,  # ids never reused, even once every row is purged
    )
    op.create_index("ix_security_events_expires", "security_events", ["expires_at"])


def downgrade() -> None:
    op.drop_table("security_events")
