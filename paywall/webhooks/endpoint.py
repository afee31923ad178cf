"""``POST /webhooks/stripe`` answered in front of Flask (paywall/front.py).

Stripe sends every event here, and a renewal day is thousands a minute; the request only verifies
the signature and records the raw event (``inbox.accept``), so Flask's request context, hooks and
flask-smorest's machinery were a large share of its CPU. Answered by a plain WSGI handler instead,
with the same contract as the Flask view it replaces:

- ``200 {"event", "outcome"}``: ``queued``, ``duplicate`` or ``ignored`` (``inbox.accept``);
- ``400`` ``invalid-event`` naming ``Stripe-Signature`` or ``body`` (bad, missing or stale
  signature; not an event; an absurd id or created), nothing stored;
- ``400`` ``malformed`` for a JSON body nested too deeply or holding a number too long to parse
  (what ``errors.refuse_unparseable_json`` answers before any Flask view);
- ``413`` over ``[server] max_body_bytes``; ``503`` naming the setting without a webhook secret;
  ``503`` with ``Retry-After`` on a transient database error (paywall/front.py), so Stripe retries.

paywall/front.py keeps the request id, the latency metric under the route's path and ``nosniff``.
The operation stays in /openapi.json (``document``), as when flask-smorest described it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields
from werkzeug.routing import Rule

from paywall import front
from paywall.context import DB_KEY, SETTINGS_KEY
from paywall.errors import ApiError, not_configured
from paywall.observability import record_webhook
from paywall.webhooks import inbox

log = logging.getLogger("paywall.webhooks.views")  # the logger the Flask view used: same log lines

PATH = "/webhooks/stripe"


def parse_event(raw: bytes, *, is_json: bool = True) -> Any:
    """The body parsed once, before the signature check, or ``inbox.NOT_JSON`` (the check then
    names the body). A body the parser crashes on is the 400 of every JSON route."""
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        message = "Nested too deeply."
    except (json.JSONDecodeError, UnicodeDecodeError):
        return inbox.NOT_JSON
    except ValueError:  # a number of more than 4,300 digits
        message = "A number has too many digits."
    if not is_json:
        return inbox.NOT_JSON  # as before any Flask view: only a JSON body was checked this way
    raise ApiError(
        400, f"The request body is not usable JSON: {message}", errors={"body": [message]}, type_="malformed"
    )


class DeliverySchema(Schema):
    event = fields.String(required=True, metadata={"description": "The Stripe event id."})
    outcome = fields.String(
        required=True,
        metadata={
            "description": "queued (recorded; the applier syncs it within about a second), "
            "ignored (a type paywall does not sync, or another mode than the configured key's) or "
            "duplicate (already recorded). What applying it did is in GET /v1/events."
        },
    )


class StripeWebhook:
    """POST /webhooks/stripe, as a handler for paywall/front.py.

    Settings and database are read from the app on each request, not kept: tests (and the
    contract fuzzer) point an app at another database between requests."""

    def __init__(self, flask_app: Flask) -> None:
        self.extensions = flask_app.extensions

    def route(self) -> front.Route:
        # OPTIONS as Flask answered it for the view this replaces: 200 and what is allowed.
        return front.Route(PATH, {"POST": self.post, "OPTIONS": self.options})

    def options(self, _environ: front.Environ) -> front.Answer:
        return 200, b"", [("Allow", "OPTIONS, POST"), ("Content-Type", "text/plain")]

    def post(self, environ: front.Environ) -> front.Answer:
        settings = self.extensions[SETTINGS_KEY]
        secrets = settings.secrets.stripe_webhook_secrets
        if not secrets:
            raise not_configured("PAYWALL_STRIPE_WEBHOOK_SECRET", "Stripe webhooks")
        raw = front.read_body(environ, settings.server.max_body_bytes)
        # Parsed once here, for the 400 above and for verify (which used to parse it again).
        parsed = parse_event(raw, is_json=front.is_json(front.media_type(environ)))
        try:
            event = inbox.verify(
                raw,
                environ.get("HTTP_STRIPE_SIGNATURE"),
                secrets,
                settings.stripe.webhook_tolerance_seconds,
                parsed=parsed,
            )
        except inbox.InvalidEvent as exc:
            record_webhook("unverified", "rejected")
            log.warning("stripe webhook rejected: %s", exc.message)
            raise ApiError(
                400, exc.message, errors={exc.field: [exc.message]}, type_="invalid-event"
            ) from None
        event_type = str(event.get("type", "unknown"))
        try:
            delivery = inbox.accept(self.extensions[DB_KEY], settings, raw, event)
        except Exception:
            # Answered 503 (transient) or 500 by paywall/front.py; Stripe retries either way.
            record_webhook(event_type, "error")
            raise
        record_webhook(event_type, delivery.outcome)
        # Ids and outcome only: the audit trail without personal data (the payload stays in the inbox).
        log.info("stripe event %s %s: %s", delivery.event_id, event_type, delivery.outcome)
        return front.json_answer(200, {"event": delivery.event_id, "outcome": delivery.outcome})


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(api: Api) -> None:
    """Describe the operation in /openapi.json as flask-smorest described the Flask view."""
    api.spec.components.schema("Delivery", schema=DeliverySchema)
    operation = {
        "summary": "Receive a Stripe event: verify its signature, record it once, answer at once.",
        "description": "The sync happens apart from the request, in batches (the applier that "
        "``paywall serve``\nruns, or ``paywall stripe apply`` workers); GET /v1/events shows each "
        "event's outcome.",
        "tags": ["webhooks"],
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Delivery"}}},
            },
            "400": _problem(
                "Bad, missing or stale signature, not an event, or an absurd event id or created."
            ),
            "413": _problem("Body over the size limit."),
            "503": _problem("No webhook secret set, or the database is unavailable."),
            "default": {"$ref": "#/components/responses/DEFAULT_ERROR"},
        },
    }
    # flask-smorest's spec plugin reads the path from a werkzeug Rule, as for its own routes.
    api.spec.path(rule=Rule(PATH), operations={"post": operation})


def install(app: Flask, api: Api) -> None:
    """Serve POST /webhooks/stripe in front of ``app``'s Flask machinery, and document it."""
    front.install(app, StripeWebhook(app).route())
    document(api)
