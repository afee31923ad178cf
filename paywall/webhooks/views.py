"""HTTP for the Stripe sync: POST /webhooks/stripe (signed by Stripe) and GET /v1/events (admin)."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from paywall.api import Blueprint
from paywall.auth import require_role
from paywall.clock import isoformat
from paywall.context import current_db, current_settings
from paywall.errors import ApiError, not_configured
from paywall.models import StripeEvent
from paywall.observability import record_webhook
from paywall.schemas import StrictSchema
from paywall.webhooks import inbox

log = logging.getLogger(__name__)
blp = Blueprint("webhooks", __name__, description="Stripe webhooks and the event inbox")

STATUSES = ("received", "processed", "ignored", "failed")  # received: waiting for the applier


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


class EventQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    type = fields.String(validate=validate.Length(max=100))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    before = fields.Integer(
        # Ids are BIGINT: a larger number is a 422, not a database overflow.
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "Page: rows older than this id."},
    )


class EventSchema(Schema):
    id = fields.Integer()
    stripe_event_id = fields.String()
    type = fields.String()
    status = fields.String()
    error = fields.String(allow_none=True)
    object_id = fields.String(allow_none=True)
    api_version = fields.String(allow_none=True)
    livemode = fields.Boolean()
    created = fields.String()
    received_at = fields.String()
    processed_at = fields.String(allow_none=True)
    attempts = fields.Integer()
    deliveries = fields.Integer()


class EventListSchema(Schema):
    events = fields.List(fields.Nested(EventSchema))
    next_before = fields.Integer(allow_none=True)


def event_body(row: StripeEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "stripe_event_id": row.stripe_event_id,
        "type": row.type,
        "status": row.status,
        "error": row.error,
        "object_id": row.object_id,
        "api_version": row.api_version,
        "livemode": row.livemode,
        "created": isoformat(row.created),
        "received_at": isoformat(row.received_at),
        "processed_at": isoformat(row.processed_at),
        "attempts": row.attempts,
        "deliveries": row.deliveries,
    }


@blp.route("/webhooks/stripe", methods=["POST"])
@blp.response(200, DeliverySchema)
@blp.alt_response(
    400,
    schema="Error",
    description="Bad, missing or stale signature, not an event, or an absurd event id or created.",
)
@blp.alt_response(413, schema="Error", description="Body over the size limit.")
@blp.alt_response(503, schema="Error", description="No webhook secret set, or the database is unavailable.")
def stripe_webhook() -> Any:
    """Receive a Stripe event: verify its signature, record it once, answer at once.

    The sync happens apart from the request, in batches (the applier that ``paywall serve``
    runs, or ``paywall stripe apply`` workers); GET /v1/events shows each event's outcome."""
    settings = current_settings()
    secrets = settings.secrets.stripe_webhook_secrets
    if not secrets:
        raise not_configured("PAYWALL_STRIPE_WEBHOOK_SECRET", "Stripe webhooks")
    raw = request.get_data(cache=False)
    try:
        event = inbox.verify(
            raw, request.headers.get("Stripe-Signature"), secrets, settings.stripe.webhook_tolerance_seconds
        )
    except inbox.InvalidEvent as exc:
        record_webhook("unverified", "rejected")
        log.warning("stripe webhook rejected: %s", exc.message)
        raise ApiError(400, exc.message, errors={exc.field: [exc.message]}, type_="invalid-event") from None
    event_type = str(event.get("type", "unknown"))
    try:
        delivery = inbox.accept(current_db(), settings, raw, event)
    except Exception:
        # Answered 503 (transient) or 500 by the error handlers; Stripe retries either way.
        record_webhook(event_type, "error")
        raise
    record_webhook(event_type, delivery.outcome)
    # Ids and outcome only: the audit trail without personal data (the payload stays in the inbox).
    log.info("stripe event %s %s: %s", delivery.event_id, event_type, delivery.outcome)
    # The body DeliverySchema documents, built directly: the schema's dump and jsonify were a
    # twentieth of this request's CPU, and Stripe sends every event through here.
    body = json.dumps({"event": delivery.event_id, "outcome": delivery.outcome})
    return Response(body, mimetype="application/json")


@blp.route("/v1/events", methods=["GET"])
@require_role("admin")
@blp.arguments(EventQuerySchema, location="query")
@blp.response(200, EventListSchema)
def list_events(args: dict[str, Any]) -> Any:
    """The Stripe event inbox, newest first (filter by status or type; page with ``before``)."""
    with current_db().transaction(readonly=True) as session:
        rows = inbox.list_events(
            session,
            status=args.get("status"),
            type_=args.get("type"),
            limit=args["limit"],
            before=args.get("before"),
        )
        body = [event_body(r) for r in rows]
    next_before = body[-1]["id"] if len(body) == args["limit"] else None
    return {"events": body, "next_before": next_before}


def init_app(app: Flask, api: Api) -> None:
    """Register the routes."""
    api.register_blueprint(blp)
