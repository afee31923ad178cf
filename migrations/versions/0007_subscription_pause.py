"""Subscription pauses: Stripe's pause_collection, and when the current pause began.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:20:00

Stripe's customer portal pauses a subscription with ``pause_collection`` (``behavior``:
keep_as_draft, mark_uncollectible or void; ``resumes_at``) and leaves its status ``active``; the
``paused`` status (a trial that ended without a payment method) needs no new column. ``paused_at``
is when the current pause (either kind) began, as the stored events show; for the subscriptions
report.
Additive and nullable: the previous code keeps running while it is applied, and existing rows read
as not paused until their next subscription event (or ``paywall stripe sync``) fills them in.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("pause_collection_behavior", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("pause_collection_resumes_at", paywall.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("paused_at", paywall.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("paused_at")
        batch.drop_column("pause_collection_resumes_at")
        batch.drop_column("pause_collection_behavior")
