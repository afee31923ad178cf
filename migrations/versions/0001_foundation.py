"""Foundation: readers and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "readers",
        sa.Column("id", ID, nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("marketing_opt_in", sa.Boolean(), nullable=False),
        sa.Column("unsubscribed_at", paywall.db.UTCDateTime(), nullable=True),
        sa.Column("erased_at", paywall.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", paywall.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", paywall.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_readers_external_id")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", paywall.db.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", paywall.db.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", paywall.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint("role IN ('site', 'finance', 'admin')", name=op.f("ck_api_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("readers")
