"""Reader request and response bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from paywall.schemas import StrictBoolean, StrictSchema


class ReaderInSchema(StrictSchema):
    email = fields.Email(allow_none=True, validate=validate.Length(max=320))
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    marketing_opt_in = StrictBoolean()


class PauseCollectionSchema(Schema):
    behavior = fields.String(metadata={"description": "keep_as_draft, mark_uncollectible or void"})
    resumes_at = fields.String(allow_none=True, metadata={"description": "null: until resumed"})


class SubscriptionSummarySchema(Schema):
    stripe_subscription_id = fields.String()
    status = fields.String()
    plan = fields.String(allow_none=True)
    kind = fields.String()
    interval = fields.String(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    current_period_start = fields.String(allow_none=True)
    current_period_end = fields.String(allow_none=True)
    cancel_at_period_end = fields.Boolean()
    cancel_at = fields.String(allow_none=True)
    trial_end = fields.String(allow_none=True)
    canceled_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)
    payment_failed_at = fields.String(
        allow_none=True, metadata={"description": "first failed payment still unpaid (grace start)"}
    )
    paused = fields.Boolean(
        metadata={
            "description": "status paused, or collection paused (pause_collection) and not yet at "
            "resumes_at: no subscription access"
        }
    )
    pause_collection = fields.Nested(
        PauseCollectionSchema, allow_none=True, metadata={"description": "Stripe's pause_collection"}
    )
    paused_at = fields.String(allow_none=True, metadata={"description": "when the current pause began"})


class DonationSummarySchema(Schema):
    stripe_charge_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    refunded = fields.Integer()
    dispute_status = fields.String(allow_none=True)
    paid_at = fields.String()
    campaign = fields.String(allow_none=True)
    recurring = fields.Boolean()


class CompSummarySchema(Schema):
    until = fields.String()
    note = fields.String(allow_none=True)
    granted_at = fields.String()


class SupporterSchema(Schema):
    subscription = fields.Nested(SubscriptionSummarySchema, allow_none=True)
    subscriptions = fields.List(fields.Nested(SubscriptionSummarySchema))
    donations = fields.List(fields.Nested(DonationSummarySchema))
    comp = fields.Nested(CompSummarySchema, allow_none=True)


class ReaderOutSchema(Schema):
    reader = fields.String(required=True)
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    marketing_opt_in = fields.Boolean()
    unsubscribed = fields.Boolean()
    erased = fields.Boolean()
    registered = fields.Boolean(
        metadata={"description": "Signed in here, or put by the site: passes a registration wall."}
    )
    created_at = fields.String()
    updated_at = fields.String()
    supporter = fields.Nested(SupporterSchema)


class ErasedSchema(Schema):
    reader = fields.String(required=True)
    outcome = fields.String(required=True, metadata={"description": "erased or already_erased"})
