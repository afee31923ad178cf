"""Shared marshmallow pieces: the problem schema and field validators used at every edge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate
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


def unstorable_text(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None: a NUL (PostgreSQL refuses it in text) or a
    lone surrogate such as JSON's ``"\\ud800"`` (it has no UTF-8 form, so no database takes it)."""
    if "\x00" in value:
        return "Must not contain control characters."  # the identifier rule's words: one message
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode text (no unpaired surrogates)."
    return None


def unstorable_text_errors(data: Any) -> dict[str, list[str]]:
    """Each string in ``data`` (keys and values, at any depth) that cannot be stored, by field path."""
    errors: dict[str, list[str]] = {}
    # Iterative, so a deep body cannot exhaust the recursion limit here.
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = unstorable_text(value)
            if problem:
                errors.setdefault(path or "body", []).append(problem)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (problem := unstorable_text(key)):
                    errors.setdefault(name, []).append(problem)
                stack.append((name, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
    return errors


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo never passes silently; and no text field (of this schema
    or any that derives from it: every request schema does) takes a NUL or a lone surrogate."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_unstorable_text(self, data: Any, **_: Any) -> Any:
        errors = unstorable_text_errors(data)
        if errors:
            raise ValidationError(errors)
        return data


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
