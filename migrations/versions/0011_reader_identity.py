"""Reader identity: verified emails, sessions that can be ended everywhere, one-time sign-in codes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 14:30:00

Additive: three nullable or defaulted columns on ``readers`` and a new table. Code from before this
revision never reads them; a reader row it creates simply has no verified email and session 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        # The lower-cased address this reader proved they own (sign-in by email); one reader each.
        batch.add_column(sa.Column("verified_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("email_verified_at", paywall.db.UTCDateTime(timezone=True), nullable=True))
        # Signed in here, or vouched for by the site (PUT /v1/readers): the registration wall's test.
        batch.add_column(sa.Column("registered_at", paywall.db.UTCDateTime(timezone=True), nullable=True))
        # Reader tokens carry it; "sign out everywhere" increments it, so older tokens stop working.
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
        batch.create_unique_constraint(op.f("uq_readers_verified_email"), ["verified_email"])
    op.create_table(
        "signin_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False, server_default="signin"),
        # Kept only while the code is live (the exchange must know whom it proves); blanked on use.
        sa.Column("email", sa.String(length=320), nullable=True),
        # A one-time return token (/thanks, purpose "return") names its reader instead of an address.
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name=op.f("fk_signin_codes_reader_id_readers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_codes")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_signin_codes_token_hash")),
    )
    op.create_index(op.f("ix_signin_codes_email_hash"), "signin_codes", ["email_hash"])
    op.create_index(op.f("ix_signin_codes_expires_at"), "signin_codes", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_signin_codes_expires_at"), table_name="signin_codes")
    op.drop_index(op.f("ix_signin_codes_email_hash"), table_name="signin_codes")
    op.drop_table("signin_codes")
    with op.batch_alter_table("readers") as batch:
        batch.drop_constraint(op.f("uq_readers_verified_email"), type_="unique")
        batch.drop_column("session_version")
        batch.drop_column("registered_at")
        batch.drop_column("email_verified_at")
        batch.drop_column("verified_email")
