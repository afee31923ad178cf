"""POST /support/access: the access check in client mode, asked by the widget on a site's page.

A site without a backend cannot ask ``POST /v1/access`` (that needs its site key), so the widget asks
for itself: ``{"reader_token"?, "anonymous_reader", "article", "level"?}``. Only a valid reader token
(paywall/signin/tokens.py: signature and session version) names a reader. Without one, the browser is
evaluated as its anonymous id (paywall/access/anonymous.py): its meter and dismissal only, never a
reader's subscription, payment or comp, whatever id it sends. This is a soft paywall (the article is
in the page; scripts off reads it); server mode, where the site asks /v1/access, is the hard one.

The answer is that of ``POST /v1/access`` (``reader`` is null for an anonymous browser) plus
``signed_in`` (false: forget the reader token) and, always, ``token`` / ``token_expires_at``: an
access token for this decision, which the widget uses for /support/appeal and /support/dismiss.
Runs on every article view: one state query (two when a reader token's session has ended), no
transaction, no Stripe.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask_smorest import Api
from marshmallow import ValidationError, fields, validate
from sqlalchemy.engine import Connection

from paywall import browser, clock
from paywall.access import service
from paywall.access.anonymous import BROWSER_ID, anonymous_key
from paywall.access.rules import Decision
from paywall.access.schemas import LevelField
from paywall.access.tokens import sign_decision
from paywall.checkout import limits
from paywall.checkout.settings import ratelimit_settings
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError, flatten_messages
from paywall.schemas import ReaderIdField, StrictSchema
from paywall.signin.tokens import token_claims

bp = Blueprint("access_browser", __name__)
browser.install(bp)

# A reader token is a few hundred characters; anything much longer is not one.
READER_TOKEN_MAX = 4096


class BrowserAccessSchema(StrictSchema):
    reader_token = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=READER_TOKEN_MAX)
    )
    anonymous_reader = fields.String(
        required=True,
        validate=validate.Regexp(BROWSER_ID, error="Must be 16 to 64 URL-safe characters (A-Z a-z 0-9 _ -)."),
    )
    article = ReaderIdField(required=True)
    level = LevelField()


SCHEMA = BrowserAccessSchema()


def _parse() -> dict[str, Any]:
    """The body, validated: 400 when it is not a JSON object, 422 naming each bad field."""
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "The body must be a JSON object (Content-Type: application/json).",
            errors={"body": ["Expected a JSON object."]},
            type_="malformed",
        )
    try:
        data: dict[str, Any] = SCHEMA.load(body)
    except ValidationError as exc:
        errors = flatten_messages(exc.messages)
        field, messages = next(iter(errors.items()))
        raise ApiError(422, f"Invalid {field}: {messages[0]}", errors=errors, type_="validation") from None
    return data


def check(
    conn: Connection, settings: Settings, data: dict[str, Any], now: dt.datetime
) -> tuple[str | None, Decision]:
    """(the signed-in reader or None, the decision): a reader only from a valid reader token.

    The token's signature is checked here and its session version against the reader row the
    state query reads anyway: the same test as paywall.signin.tokens.reader_from_token (not erased,
    session not ended), without a second round trip on every signed-in article view.
    """
    article, level = data["article"], data["level"]
    signed = token_claims(settings, data["reader_token"])
    if signed is not None:
        reader, version = signed
        state, decision = service.peek(conn, settings, reader, article, now, level=level)
        if state.session_version == version:
            if decision.records_read:
                decision = service.spend(conn, settings, state, decision, now)
            return reader, decision
    browser_id = data["anonymous_reader"]
    return None, service.evaluate_anonymous(conn, settings, browser_id, article, now, level=level)


@bp.post("/support/access")
def support_access() -> Response:
    """May this browser read this article? As POST /v1/access, plus ``signed_in`` and a token."""
    data = _parse()
    settings = current_settings()
    now = clock.now()
    # As POST /v1/access: statements that stand alone and are safe to repeat (see paywall/access/meter.py).
    reader, decision = current_db().run_idempotent(lambda conn: check(conn, settings, data, now))
    article = data["article"]
    body = service.answer_body(reader, article, decision)
    subject = reader if reader is not None else anonymous_key(data["anonymous_reader"])
    token, expires = sign_decision(
        settings, subject, decision, now, article=article, anonymous=reader is None
    )
    body.update(signed_in=reader is not None, token=token, token_expires_at=clock.isoformat(expires))
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def init_app(app: Flask, api: Api) -> None:
    """Register the route, limited per client address like the widget's other routes."""
    app.register_blueprint(bp)
    limits.limit(
        app,
        "access_browser.support_access",
        per_address=ratelimit_settings(settings_of(app)).widget_per_address,
    )
