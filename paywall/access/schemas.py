"""Request and response bodies of the access, token, dismissal and comp routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from paywall import clock
from paywall.access.comps import LAST_DAY, LATEST_UNTIL, TOO_LATE, end_of_day
from paywall.access.rules import ALLOWED_REASONS, DEFAULT_LEVEL, DENIED_REASONS, LEVELS
from paywall.schemas import ReaderIdField, StrictBoolean, StrictSchema


def LevelField() -> fields.String:
    """The article's access level (``"level"`` in both access routes)."""
    return fields.String(
        load_default=DEFAULT_LEVEL,
        validate=validate.OneOf(LEVELS),
        metadata={
            "enum": list(LEVELS),
            "description": "free: everyone, no meter. metered (default): entitlements, then the monthly "
            "allowance (larger for registered readers). registered: entitlements, then registered "
            "readers' allowance; others `registration_required`. supporters: entitlements only; "
            "others `supporters_only`.",
        },
    )


class AccessRequestSchema(StrictSchema):
    reader = ReaderIdField(required=True, metadata={"description": "The site's reader id or cookie id."})
    article = ReaderIdField(required=True, metadata={"description": "The site's article id."})
    explain = StrictBoolean(
        load_default=False, metadata={"description": "Add `trace`: every rule and why it applied or not."}
    )
    level = LevelField()


class MeterSchema(Schema):
    used = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    resets_at = fields.String(required=True, metadata={"description": "Start of the next meter month (UTC)."})


class TraceStepSchema(Schema):
    rule = fields.String(
        required=True,
        metadata={
            "description": "level, entitlements, comp, subscription, trial, grace_period, donation, metered, "
            "supporters, registered, appeal; after an appeal shown: ask_budget, min_articles, experiment "
            "(docs/access.md)."
        },
    )
    applies = fields.Boolean(required=True)
    why = fields.String(required=True)


class AccessAnswerSchema(Schema):
    reader = fields.String(required=True)
    article = fields.String(required=True, allow_none=True)
    allowed = fields.Boolean(required=True)
    reason = fields.String(
        required=True, metadata={"enum": [*ALLOWED_REASONS, *DENIED_REASONS], "description": "Why."}
    )
    until = fields.String(
        required=True, allow_none=True, metadata={"description": "When the granted access ends (UTC)."}
    )
    meter = fields.Nested(MeterSchema, required=True, allow_none=True)
    appeal = fields.Boolean(required=True, metadata={"description": "Show the support appeal."})
    level = fields.String(
        required=True, metadata={"enum": list(LEVELS), "description": "The level asked for."}
    )
    register = fields.Boolean(
        required=True,
        metadata={
            "description": "Signing up would give this reader more (the level needs it, or a larger allowance)."
        },
    )
    token = fields.String(
        metadata={
            "description": "When not allowed: an access token for this decision; hand it to the widget, "
            "which shows the gate."
        }
    )
    token_expires_at = fields.String(metadata={"description": "When `token` expires (UTC)."})
    trace = fields.List(fields.Nested(TraceStepSchema), metadata={"description": "With explain only."})


class ReaderRequestSchema(StrictSchema):
    reader = ReaderIdField(required=True)


class TokenSchema(Schema):
    token = fields.String(
        required=True, metadata={"description": "A JWT (EdDSA); keys at /.well-known/jwks.json."}
    )
    expires_at = fields.String(required=True)


class DismissedSchema(Schema):
    reader = fields.String(required=True)
    outcome = fields.String(required=True, metadata={"description": "dismissed or extended"})
    until = fields.String(required=True, metadata={"description": "When the appeal may show again (UTC)."})


class UntilField(fields.String):
    """A date (the comp runs through that whole day, UTC) or an ISO 8601 datetime with an offset."""

    # Documented as a string (it is one on the wire); it loads as an aware datetime.
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:  # type: ignore[override]
        if not isinstance(value, str):
            raise ValidationError("Not a valid date.")
        until: dt.datetime | None
        try:
            if len(value) == 10:
                day = dt.date.fromisoformat(value)
                until = end_of_day(day) if day <= LAST_DAY else None
            else:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise ValidationError("A datetime needs a time zone offset (or Z).")
                until = parsed.astimezone(dt.UTC)
        except ValueError:
            raise ValidationError("Not a valid date (YYYY-MM-DD) or datetime.") from None
        except OverflowError:
            until = None  # late on 9999-12-31 with an offset: UTC would be past Python's calendar
        if until is None or until > LATEST_UNTIL:
            raise ValidationError(TOO_LATE)
        return until


def _in_future(value: dt.datetime) -> None:
    if value <= clock.now():
        raise ValidationError("Must be in the future.")


class CompInSchema(StrictSchema):
    until = UntilField(required=True, validate=_in_future)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))


class CompSchema(Schema):
    reader = fields.String(required=True)
    until = fields.String(required=True)
    note = fields.String(allow_none=True)
    granted_at = fields.String()
    granted_by = fields.String(allow_none=True)


class RevokedSchema(Schema):
    reader = fields.String(required=True)
    outcome = fields.String(required=True, metadata={"description": "revoked"})
