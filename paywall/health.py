"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from paywall.context import current_db

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


class StatusSchema(Schema):
    status = fields.String(required=True)
    database = fields.String()


@blp.route("/healthz")
@blp.response(200, StatusSchema)
def healthz() -> dict[str, Any]:
    """The process is alive (does not touch the database)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, StatusSchema)
@blp.alt_response(503, schema=StatusSchema, description="The database does not answer.")
def readyz() -> Any:
    """The database answers; 503 while it does not, so a load balancer stops sending traffic."""
    if current_db().ping():
        return {"status": "ok", "database": "ok"}
    return {"status": "unavailable", "database": "unreachable"}, 503
