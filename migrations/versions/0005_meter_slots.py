"""Meter slots: number each reader's free reads per period, unique, so spending needs no lock.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 15:40:00

Existing rows get slots 1..n per (reader, period) in the order they were read. Additive, like every
migration here, so the previous code keeps running while it is applied: the column stays nullable
(rows that code writes during the rollout have no slot; they still count against the allowance, and
unique constraints let NULLs be). A later migration can make it NOT NULL once no such rows remain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

# A correlated count instead of a window function in UPDATE ... FROM: one statement that both
# PostgreSQL and SQLite run. A reader has a handful of rows per period, found by the primary key.
BACKFILL = """
UPDATE meter_reads SET slot = (
    SELECT count(*) FROM meter_reads AS m
     WHERE m.reader = meter_reads.reader AND m.period = meter_reads.period
       AND (m.read_at < meter_reads.read_at
            OR (m.read_at = meter_reads.read_at AND m.article <= meter_reads.article))
)
"""


def upgrade() -> None:
    with op.batch_alter_table("meter_reads") as batch:
        batch.add_column(sa.Column("slot", sa.SmallInteger(), nullable=True))
    op.execute(BACKFILL)
    with op.batch_alter_table("meter_reads") as batch:
        batch.create_unique_constraint(
            op.f("uq_meter_reads_reader_period_slot"), ["reader", "period", "slot"]
        )


def downgrade() -> None:
    with op.batch_alter_table("meter_reads") as batch:
        batch.drop_constraint(op.f("uq_meter_reads_reader_period_slot"), type_="unique")
        batch.drop_column("slot")
