"""Shared marshmallow pieces: the problem schema and field validators used at every edge."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.routing import BaseConverter

# A reader id is the site's own opaque string: 1 to 128 printable characters.
READER_ID_MAX = 128
# The same rule as a pattern, published in the OpenAPI description: no control characters, and
# not starting with a space (so an empty-looking id is refused).
IDENTIFIER_PATTERN = "^[^\\u0000-\\u0020\\u007f][^\\u0000-\\u001f\\u007f]*$"


def validate_identifier(value: str) -> None:
    """Reader and article ids: 1-128 characters, no control characters, no leading space."""
    if not value or not value.strip():
        raise ValidationError("Must not be empty.")
    if len(value) > READER_ID_MAX:
        raise ValidationError(f"Must be at most {READER_ID_MAX} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError("Must not contain control characters.")
    if value[0] == " ":
        raise ValidationError("Must not start with a space.")


class ReaderIdConverter(BaseConverter):
    """``<reader:reader>`` in routes: documented as 1-128 characters without control characters."""

    # Any length here, so an over-long id gets a 422 naming the field rather than a 404.
    regex = r"[^/]+"


# JSON Schema of a reader id path parameter (no control characters), for the OpenAPI description.
READER_ID_PARAM_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": READER_ID_MAX,
    "pattern": "^[^\\u0000-\\u0020\\u007f/][^\\u0000-\\u001f\\u007f/]*$",
}


class StrictBoolean(fields.Boolean):
    """JSON ``true``/``false`` only: 0, 1 or "yes" are type errors (they are never consent)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo never passes silently."""

    class Meta:
        unknown = RAISE


def ReaderIdField(**kwargs: Any) -> fields.String:
    """A reader or article id field, validated and documented (length and pattern) alike.

    One validator, so a bad id gets the one message that fits it (an empty id is "Must not be
    empty.", not that and a length and a pattern complaint too); the OpenAPI description gets the
    same rule as minLength, maxLength and pattern from the metadata.
    """
    metadata = {
        "minLength": 1,
        "maxLength": READER_ID_MAX,
        "pattern": IDENTIFIER_PATTERN,
        **kwargs.pop("metadata", {}),
    }
    return fields.String(validate=validate_identifier, metadata=metadata, **kwargs)


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
