"""Meter slots: number each reader's free reads per period, unique, so spending needs no lock.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 15:40:00

Existing rows get slots 1..n per (reader, period) in the order they were read. Deploy order: this
migration first, then the code that writes ``slot`` (the previous code does not name the column, so
its inserts would fail once it is NOT NULL; run the migration and restart together, as the README's
upgrade steps say).
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
        batch.alter_column("slot", existing_type=sa.SmallInteger(), nullable=False)
        batch.create_unique_constraint(
            op.f("uq_meter_reads_reader_period_slot"), ["reader", "period", "slot"]
        )


def downgrade() -> None:
    with op.batch_alter_table("meter_reads") as batch:
        batch.drop_constraint(op.f("uq_meter_reads_reader_period_slot"), type_="unique")
        batch.drop_column("slot")
