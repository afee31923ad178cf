"""Report sessions: a /reports sign-in is a row, so signing out ends it on the server.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 11:50:00

Additive: a new table only. Code from before this revision keeps its stateless cookies (they never
read the table); sign-ins made by that code carry no session token, so after the switch they are
simply signed out once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_report_sessions_api_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_report_sessions_token_hash")),
    )
    with op.batch_alter_table("report_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_sessions_api_key_id"), ["api_key_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_report_sessions_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_report_sessions_api_key_id"))
    op.drop_table("report_sessions")
