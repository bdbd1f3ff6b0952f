"""key_rotations: one row per decided change of the signing key (issue 5).

The primary key ("rotate:<kid>", "revoke:<kid>", "initial", ...) is the guard that makes two
issuer processes deciding the same change at the same moment create one key, not two.

Revision ID: 0003
Revises: 0002
Create Date: 2026-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("key_rotations"):
        return
    op.create_table(
        "key_rotations",
        sa.Column("slot", sa.String(200), primary_key=True),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_rotations")
