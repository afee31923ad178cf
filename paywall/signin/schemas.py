"""Request and response bodies of the sign-in routes (/v1/signin*, /support/signin*, signout)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from paywall.access.anonymous import valid_browser_id
from paywall.schemas import StrictBoolean, StrictSchema
from paywall.signin.returns import MAX_RETURN_URL

EMAIL_MAX = 320
TOKEN_MAX = 200
READER_TOKEN_MAX = 4000


def _browser_id(value: str) -> None:
    if not valid_browser_id(value):
        raise ValidationError("Not a browser id (16 to 64 characters: letters, digits, - and _).")


class _EmailSchema(StrictSchema):
    @pre_load
    def _trim_email(self, data: Any, **_: Any) -> Any:
        # A pasted address often brings a space along; it is no reason to refuse it.
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            return {**data, "email": data["email"].strip()}
        return data


class SigninRequestSchema(_EmailSchema):
    email = fields.Email(
        required=True,
        validate=validate.Length(max=EMAIL_MAX),
        metadata={"description": "Where the code goes. The answer is the same whether it is known or not."},
    )
    return_url = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_RETURN_URL),
        metadata={
            "description": "The page to come back to (the article): on an allowed origin, the site_url's, "
            "or ours. The mailed link opens it with `#paywall_signin=TOKEN` (or goes to [signin] "
            "return_url with `?paywall_signin=TOKEN&return_to=...` when that is set)."
        },
    )


class SentSchema(Schema):
    outcome = fields.String(required=True, metadata={"description": "Always `sent`."})


class ExchangeRequestSchema(_EmailSchema):
    email = fields.Email(load_default=None, validate=validate.Length(max=EMAIL_MAX))
    code = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^\s*\d{6}\s*$", error="Must be the 6 digits from the mail."),
        metadata={"description": "The 6-digit code from the mail (with `email`)."},
    )
    token = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=TOKEN_MAX),
        metadata={"description": "Instead of email and code: the one-time token from the link or /thanks."},
    )
    anonymous_reader = fields.String(
        load_default=None,
        validate=_browser_id,
        metadata={"description": "The widget's browser id: its meter and dismissal become the reader's."},
    )

    @validates_schema
    def _one_proof(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("token"):
            if data.get("code") or data.get("email"):
                raise ValidationError("Send either token, or email and code.", "token")
            return
        if not data.get("email"):
            raise ValidationError("Missing email (with code), or send token.", "email")
        if not data.get("code"):
            raise ValidationError("Missing code: the 6 digits from the mail.", "code")


class SignedInSchema(Schema):
    reader = fields.String(required=True, metadata={"description": "The reader's id."})
    reader_token = fields.String(
        required=True,
        metadata={
            "description": "Keep it (the widget keeps it in localStorage): fresh access tokens come from "
            "it. A JWT (EdDSA, `pur` reader); never put it in a URL."
        },
    )
    access_token = fields.String(
        required=True, metadata={"description": "An access token for the reader now."}
    )
    expires_at = fields.String(
        required=True, metadata={"description": "When the reader token expires (UTC)."}
    )


class SignoutRequestSchema(StrictSchema):
    # No NUL: every body string is refused with one (PostgreSQL cannot store it), so say so here.
    reader_token = fields.String(
        required=True,
        validate=validate.Length(min=1, max=READER_TOKEN_MAX),
        metadata={"pattern": "^[^\\u0000]*$"},
    )
    everywhere = StrictBoolean(
        load_default=False, metadata={"description": "End every session of this reader, on every device."}
    )


class SignedOutSchema(Schema):
    outcome = fields.String(
        required=True,
        metadata={
            "enum": ["signed_out", "signed_out_everywhere", "not_signed_in"],
            "description": "`not_signed_in`: the token was not valid anyway. Forget it either way.",
        },
    )
