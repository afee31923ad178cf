"""Request and response bodies of the checkout API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from paywall.schemas import ReaderIdField, StrictSchema

# The validators are also the OpenAPI description (minLength, pattern, ...), so what the contract
# says is valid is exactly what is accepted.

# A campaign code ties a payment back to the appeal that asked for it (metadata.campaign).
CAMPAIGN: list[Callable[[Any], Any]] = [
    validate.Length(min=1, max=100),
    validate.Regexp(r"^[A-Za-z0-9._:-]+$"),
]
# An absolute http(s) URL with a host; Stripe sends the reader back there.
RETURN_URL: list[Callable[[Any], Any]] = [
    validate.Length(max=2000),
    validate.Regexp(
        r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:[/?#][^\s]*)?$",
        error="Must be an absolute http(s) URL.",
    ),
]
# The site's reader id: the one rule of paywall.schemas, validated and documented alike.
ReaderId = ReaderIdField


def Campaign() -> fields.String:
    return fields.String(load_default=None, validate=CAMPAIGN)


def AppealAsk() -> fields.String:
    # Any string: a bad, expired or foreign ask is ignored, it never fails a Checkout.
    return fields.String(
        load_default=None,
        validate=validate.Length(max=2000),
        metadata={
            "description": "The appeal's ask (the `ask` of GET /support/appeal, or of the Subscribe/Donate "
            "link the reader clicked), so the payment is attributed to the appeal's channel, experiment "
            "and variant (Checkout metadata appeal_channel, appeal_experiment, appeal_variant). Without "
            "one, a reader in a running footer experiment is attributed to their arm, channel `direct`. "
            "An invalid, expired or another reader's ask is ignored."
        },
    )


def ReturnUrl() -> fields.String:
    return fields.String(load_default=None, validate=RETURN_URL)


class PlanSchema(Schema):
    name = fields.String(required=True)
    label = fields.String(required=True)
    description = fields.String()
    price = fields.String(required=True, metadata={"description": "Stripe price id."})
    interval = fields.String(required=True, metadata={"description": "month or year"})
    amount = fields.Integer(required=True, metadata={"description": "Minor units, for display."})
    currency = fields.String(required=True)


class PlanListSchema(Schema):
    plans = fields.List(fields.Nested(PlanSchema), required=True)


class SubscriptionCheckoutSchema(StrictSchema):
    reader = ReaderId(required=True)
    email = fields.Email(load_default=None)
    plan = fields.String(required=True, validate=validate.Length(min=1, max=64))
    campaign = Campaign()
    ask = AppealAsk()
    success_url = ReturnUrl()
    cancel_url = ReturnUrl()


class DonationCheckoutSchema(StrictSchema):
    reader = ReaderId(load_default=None)
    email = fields.Email(load_default=None)
    amount = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1),
        metadata={"description": "Minor units (cents; yen for JPY), within [donations.limits.<currency>]."},
    )
    currency = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Za-z]{3}$"),
        metadata={"description": "One of [donations] currencies (ISO 4217)."},
    )
    interval = fields.String(required=True, validate=validate.OneOf(["once", "month", "year"]))
    campaign = Campaign()
    ask = AppealAsk()
    success_url = ReturnUrl()
    cancel_url = ReturnUrl()


class CheckoutCreatedSchema(Schema):
    url = fields.String(required=True, metadata={"description": "Send the reader here (Stripe Checkout)."})
    session_id = fields.String(required=True)


class PortalSchema(StrictSchema):
    reader = ReaderId(required=True)
    return_url = ReturnUrl()


class PortalCreatedSchema(Schema):
    url = fields.String(required=True)
