"""Query parameters of the report routes (and the CLI's options, validated by the same schemas)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from paywall.reports.periods import TIME_GROUPS
from paywall.reports.revenue import GROUPS
from paywall.schemas import StrictSchema

FORMATS = ("json", "csv", "xlsx")
LIVEMODES = ("auto", "live", "test", "all")


class _Common(StrictSchema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(FORMATS),
        metadata={"description": "json (minor units), csv or xlsx (major units)."},
    )
    livemode = fields.String(
        load_default=None,
        validate=validate.OneOf(LIVEMODES),
        metadata={
            "description": "Which Stripe mode's money: live, test, all, or auto (the configured key's "
            "mode; the default is reports.livemode)."
        },
    )


# Stripe began in 2011; the bounds keep local-midnight arithmetic far from datetime's limits.
DATES = validate.Range(min=dt.date(1970, 1, 1), max=dt.date(9998, 12, 31))


class _Period(_Common):
    start = fields.Date(
        required=True, validate=DATES, metadata={"description": "First day (inclusive), YYYY-MM-DD."}
    )
    end = fields.Date(
        required=True, validate=DATES, metadata={"description": "Day after the last (exclusive), YYYY-MM-DD."}
    )

    @validates_schema
    def _end_after_start(self, data: dict[str, Any], **_: Any) -> None:
        if "start" in data and "end" in data and data["end"] <= data["start"]:
            raise ValidationError("Must be after start (the period is [start, end)).", field_name="end")
        if "start" in data and "end" in data and (data["end"] - data["start"]).days > 366 * 20:
            raise ValidationError("The period may span at most 20 years.", field_name="end")


class RevenueQuerySchema(_Period):
    group_by = fields.String(load_default="month", validate=validate.OneOf(GROUPS))


class SubscriptionsQuerySchema(_Period):
    group_by = fields.String(load_default="month", validate=validate.OneOf(TIME_GROUPS))


class PaymentsQuerySchema(_Period):
    pass


class PayoutsQuerySchema(_Period):
    pass


class DonorsQuerySchema(_Common):
    year = fields.Integer(required=True, validate=validate.Range(min=1970, max=9998))


QUERY_SCHEMAS: dict[str, type[StrictSchema]] = {
    "revenue": RevenueQuerySchema,
    "subscriptions": SubscriptionsQuerySchema,
    "payments": PaymentsQuerySchema,
    "donors": DonorsQuerySchema,
    "payouts": PayoutsQuerySchema,
}
