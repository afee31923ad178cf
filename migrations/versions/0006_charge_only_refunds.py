"""Charge-only refunds: refunds known only from the charge's ``amount_refunded`` become refund rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:30:00

Endpoints on Stripe API versions before 2024-10-28 get no ``refund.*`` events for card refunds, only
``charge.refunded``: the payment saw the refund, the reports (which sum ``refunds``) did not. A row
with ``charge_amount_refunded`` set stands for the part of the charge's refunded amount that no
refund object accounts for (see ``paywall.models.billing.Refund``).

Backfill: each payment whose charge says more was refunded than its counted refund objects get one
such row for the difference, dated by the charge state that said so (the event that last wrote the
payment, else the payment date). The sync keeps these rows current from then on.

Additive: the column is nullable and the previous code ignores it (it already counts every refund
row that did not fail, so its payments' refunded amounts stay the same).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The counted refund objects of each payment (statuses as paywall.models.billing counts them).
BACKFILL = """
WITH known AS (
    SELECT p.id AS payment_id,
           COALESCE((SELECT SUM(r.amount_minor) FROM refunds AS r
                      WHERE r.stripe_charge_id = p.stripe_charge_id
                        AND (r.status IS NULL
                             OR r.status IN ('succeeded', 'pending', 'requires_action'))), 0) AS amount
      FROM payments AS p
)
INSERT INTO refunds (stripe_refund_id, stripe_charge_id, stripe_payment_intent_id, amount_minor,
                     currency, status, stripe_created, synced_event_at, synced_event_id, livemode,
                     charge_amount_refunded)
SELECT p.stripe_charge_id || ':refunded:' || CAST(p.charge_refunded_minor AS VARCHAR(20)),
       p.stripe_charge_id, p.stripe_payment_intent_id, p.charge_refunded_minor - known.amount,
       p.currency, 'succeeded', COALESCE(p.synced_event_at, p.paid_at), p.synced_event_at,
       p.synced_event_id, p.livemode, p.charge_refunded_minor
  FROM payments AS p JOIN known ON known.payment_id = p.id
 WHERE p.charge_refunded_minor > known.amount
"""


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(
            sa.Column(
                "charge_amount_refunded", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DELETE FROM refunds WHERE charge_amount_refunded IS NOT NULL")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("charge_amount_refunded")
