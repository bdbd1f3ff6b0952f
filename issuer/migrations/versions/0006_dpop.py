"""DPoP (issue 17, RFC 9449): clients that must send a proof on every grant
(``clients.dpop_bound_access_tokens``, RFC 9449 §5.2), and the key a public client's refresh-token
family is bound to (``refresh_tokens.jkt``, the RFC 7638 thumbprint of the proof key).

Existing rows keep working: old clients need no proof (default false), old refresh tokens are
bound to no key (NULL). Idempotent like 0002-0005.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "dpop_bound_access_tokens" not in {c["name"] for c in inspector.get_columns("clients")}:
        op.add_column(  # with a server default: a plain ADD COLUMN on both databases
            "clients",
            sa.Column(
                "dpop_bound_access_tokens", sa.Boolean, nullable=False, server_default=sa.false()
            ),
        )
    if "jkt" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}:
        op.add_column("refresh_tokens", sa.Column("jkt", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("jkt")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
