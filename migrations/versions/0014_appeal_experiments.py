"""Appeal experiments: raw appeal events, daily counts, asks, and attribution columns.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 23:00:00

Additive only: five new tables and three nullable columns on checkout_sessions, subscriptions and
payments, so it can deploy while old code runs (old code neither reads nor writes them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ATTRIBUTED = ("checkout_sessions", "subscriptions", "payments")


def upgrade() -> None:
    op.create_table(
        "appeal_events",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("ask", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_events")),
    )
    op.create_index("ix_appeal_events_at", "appeal_events", ["at"])
    op.create_index("ix_appeal_events_once", "appeal_events", ["ask", "type", "action"], unique=True)
    op.create_table(
        "appeal_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("count", BIGINT, nullable=False),
        sa.Column("subjects", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "experiment", "variant", "channel", "type", "action", name=op.f("pk_appeal_daily")
        ),
    )
    op.create_table(
        "appeal_exposures",
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("first_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("experiment", "subject", name=op.f("pk_appeal_exposures")),
    )
    op.create_table(
        "appeal_folds",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("folded_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_appeal_folds")),
    )
    op.create_table(
        "appeal_asks",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("asked_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("ask", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_asks")),
        sa.UniqueConstraint("ask", name=op.f("uq_appeal_asks_ask")),
    )
    op.create_index("ix_appeal_asks_subject_at", "appeal_asks", ["subject", "asked_at"])
    for table in ATTRIBUTED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("appeal_experiment", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("appeal_variant", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("appeal_channel", sa.String(length=100), nullable=True))


def downgrade() -> None:
    for table in ATTRIBUTED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("appeal_channel")
            batch.drop_column("appeal_variant")
            batch.drop_column("appeal_experiment")
    op.drop_table("appeal_asks")
    op.drop_table("appeal_folds")
    op.drop_table("appeal_exposures")
    op.drop_table("appeal_daily")
    op.drop_index("ix_appeal_events_once", table_name="appeal_events")
    op.drop_index("ix_appeal_events_at", table_name="appeal_events")
    op.drop_table("appeal_events")
