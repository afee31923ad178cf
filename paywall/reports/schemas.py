"""Query parameters of the report routes (and the CLI's options, validated by the same schemas)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from paywall.reports.periods import TIME_GROUPS
from paywall.reports.revenue import GROUPS
from paywall.schemas import StrictSchema

FORMATS = ("json", "csv", "xlsx")
LIVEMODES = ("auto", "live", "test", "all")
KINDS = ("donation", "subscription")
# Filters a form may send empty, meaning "all" (the /reports page's selects).
BLANK_MEANS_ALL = ("currency", "kind")


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
    currency = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Za-z]{3}$", error="Must be a three-letter ISO currency code."),
        metadata={"description": "Only rows in this currency (ISO code, any case); empty or absent: all."},
    )

    @pre_load
    def _blank_filters_mean_all(self, data: Any, **_: Any) -> Any:
        """A form's empty select (``currency=``) is no filter, not a bad value."""
        if any(data.get(k) == "" for k in BLANK_MEANS_ALL):
            return {k: v for k, v in data.items() if not (k in BLANK_MEANS_ALL and v == "")}
        return data


# Stripe began in 2011; the bounds keep local-midnight arithmetic far from datetime's limits.
DATES = validate.Range(min=dt.date(1970, 1, 1), max=dt.date(9998, 12, 31))


class _Kind(_Common):
    kind = fields.String(
        load_default=None,
        validate=validate.OneOf(KINDS),
        metadata={"description": "Only donations or only subscriptions; empty or absent: both."},
    )


def _check_period(data: dict[str, Any]) -> None:
    if "start" in data and "end" in data and data["end"] <= data["start"]:
        raise ValidationError("Must be after start (the period is [start, end)).", field_name="end")
    if "start" in data and "end" in data and (data["end"] - data["start"]).days > 366 * 20:
        raise ValidationError("The period may span at most 20 years.", field_name="end")


class _Dates(_Common):
    start = fields.Date(
        required=True, validate=DATES, metadata={"description": "First day (inclusive), YYYY-MM-DD."}
    )
    end = fields.Date(
        required=True, validate=DATES, metadata={"description": "Day after the last (exclusive), YYYY-MM-DD."}
    )

    @validates_schema
    def _end_after_start(self, data: dict[str, Any], **_: Any) -> None:
        _check_period(data)


class _Period(_Dates, _Kind):
    pass


class RevenueQuerySchema(_Period):
    group_by = fields.String(load_default="month", validate=validate.OneOf(GROUPS))


class SubscriptionsQuerySchema(_Period):
    group_by = fields.String(load_default="month", validate=validate.OneOf(TIME_GROUPS))


class PaymentsQuerySchema(_Period):
    pass


class PayoutsQuerySchema(_Dates):
    """No kind: a payout pays out donations and subscriptions together."""


class CampaignsQuerySchema(_Period):
    pass


class DonorsQuerySchema(_Kind):
    """A calendar year (for tax receipts), or any period by start and end."""

    year = fields.Integer(
        validate=validate.Range(min=1970, max=9998),
        metadata={"description": "Calendar year in the reporting time zone; or give start and end."},
    )
    start = fields.Date(validate=DATES, metadata={"description": "First day (inclusive), instead of year."})
    end = fields.Date(validate=DATES, metadata={"description": "Day after the last (exclusive)."})

    @validates_schema
    def _year_or_period(self, data: dict[str, Any], **_: Any) -> None:
        if "year" in data:
            if "start" in data or "end" in data:
                raise ValidationError("Give either year or start and end, not both.", field_name="year")
            return
        if "start" not in data and "end" not in data:
            raise ValidationError(
                "Missing data for required field (or give start and end).", field_name="year"
            )
        for name in ("start", "end"):
            if name not in data:
                raise ValidationError("Missing data for required field.", field_name=name)
        _check_period(data)


class ExperimentsQuerySchema(_Common):
    """No period: an experiment's window is its configured dates (payments until a day after its end)."""

    experiment = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,63}$", error="Must be an experiment's name."),
        metadata={
            "description": "Only this experiment ([appeal.experiments.<name>]); absent: every one started."
        },
    )

    @pre_load
    def _blank_experiment_means_all(self, data: Any, **_: Any) -> Any:
        if data.get("experiment") == "":
            return {k: v for k, v in data.items() if k != "experiment"}
        return data


QUERY_SCHEMAS: dict[str, type[StrictSchema]] = {
    "revenue": RevenueQuerySchema,
    "subscriptions": SubscriptionsQuerySchema,
    "payments": PaymentsQuerySchema,
    "donors": DonorsQuerySchema,
    "campaigns": CampaignsQuerySchema,
    "payouts": PayoutsQuerySchema,
    "experiments": ExperimentsQuerySchema,
}
