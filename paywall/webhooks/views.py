"""HTTP for the Stripe sync: GET /v1/events (admin). POST /webhooks/stripe (signed by Stripe) is
answered in front of Flask: paywall/webhooks/endpoint.py."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_smorest import Api
from marshmallow import Schema, fields, validate

from paywall.api import Blueprint
from paywall.auth import require_role
from paywall.clock import isoformat
from paywall.context import current_db
from paywall.models import StripeEvent
from paywall.schemas import StrictSchema
from paywall.webhooks import endpoint, inbox

log = logging.getLogger(__name__)
blp = Blueprint("webhooks", __name__, description="Stripe webhooks and the event inbox")

STATUSES = ("received", "processed", "ignored", "failed")  # received: waiting for the applier


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
    """Register the routes: GET /v1/events here, POST /webhooks/stripe in front of Flask."""
    api.register_blueprint(blp)
    endpoint.install(app, api)
