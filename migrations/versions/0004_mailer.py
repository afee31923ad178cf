"""Mailer: the appeal send-once ledger, the yearly-receipt ledger, and the suppression list.

A branch of its own off 0002 (the outbox and billing tables it reads); `paywall db upgrade` applies all heads.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-27 13:19:52.709082
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_suppressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_suppressions")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_mail_suppressions_email_hash")),
    )
    op.create_table(
        "yearly_receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("donor_key", sa.String(length=100), nullable=False),
        sa.Column("year", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_yearly_receipts")),
        sa.UniqueConstraint("donor_key", "year", name=op.f("uq_yearly_receipts_donor_key_year")),
    )
    op.create_table(
        "appeal_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name=op.f("fk_appeal_sends_reader_id_readers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_sends")),
        sa.UniqueConstraint("campaign", "reader_id", name=op.f("uq_appeal_sends_campaign_reader_id")),
    )
    with op.batch_alter_table("appeal_sends", schema=None) as batch_op:
        batch_op.create_index("ix_appeal_sends_campaign_state", ["campaign", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_appeal_sends_reader_id"), ["reader_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("appeal_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appeal_sends_reader_id"))
        batch_op.drop_index("ix_appeal_sends_campaign_state")

    op.drop_table("appeal_sends")
    op.drop_table("yearly_receipts")
    op.drop_table("mail_suppressions")
