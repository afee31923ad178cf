"""Shared marshmallow pieces: the problem schema and field validators used at every edge."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

# A reader id is the site's own opaque string: 1 to 128 printable characters.
READER_ID_MAX = 128


def validate_identifier(value: str) -> None:
    """Reader and article ids: 1-128 characters, no control characters."""
    if not value or not value.strip():
        raise ValidationError("Must not be empty.")
    if len(value) > READER_ID_MAX:
        raise ValidationError(f"Must be at most {READER_ID_MAX} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError("Must not contain control characters.")


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo never passes silently."""

    class Meta:
        unknown = RAISE


def ReaderIdField(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate_identifier, **kwargs)


class ProblemSchema(Schema):
    """RFC 9457 problem details, the body of every error answer."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        metadata={"description": "Each bad field, by name, with its messages."},
    )

    class Meta:
        unknown = RAISE


_ = validate  # re-exported for feature schemas
