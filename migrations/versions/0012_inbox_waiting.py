"""The applier's claim: a partial index on the inbox rows still waiting to be applied.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 19:50:00

Additive: an index only. The applier asks for the oldest ``received`` rows many times a second;
the index holds just those (a handful, not the whole history), so the claim and the backlog
gauges stay one cheap look-up however large the inbox grows. Code from before this revision
never reads it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WAITING = sa.text("status = 'received'")


def upgrade() -> None:
    op.create_index(
        "ix_stripe_events_waiting",
        "stripe_events",
        ["id"],
        unique=False,
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_events_waiting", table_name="stripe_events")
