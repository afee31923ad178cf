"""HTTP for access: POST /v1/access, /v1/access/token, /v1/appeals/dismiss (site) and /v1/comps (admin)."""

from __future__ import annotations

from typing import Any

from flask import Flask, g
from marshmallow import ValidationError

from paywall import clock
from paywall.access import comps, dismissals, endpoint
from paywall.access.schemas import (
    AccessAnswerSchema,
    AccessRequestSchema,
    CompInSchema,
    CompSchema,
    DismissedSchema,
    ReaderRequestSchema,
    RevokedSchema,
    TokenSchema,
)
from paywall.access.tokens import issue_access_token
from paywall.api import Blueprint
from paywall.auth import require_role
from paywall.clock import isoformat
from paywall.context import current_db, current_settings
from paywall.errors import bad_request, not_found
from paywall.schemas import validate_identifier

blp = Blueprint("access", __name__, url_prefix="/v1", description="May this reader read this article?")
comps_blp = Blueprint("comps", __name__, url_prefix="/v1/comps", description="Complimentary access (staff)")

NO_STORE = {"Cache-Control": "private, no-store"}


# Served in front of Flask (paywall/access/endpoint.py: every article view waits for it); declared
# here too, so the OpenAPI description documents it, and answered the same way if ever reached.
@blp.route("/access", methods=["POST"])
@require_role("site")
@blp.arguments(AccessRequestSchema())  # an instance: webargs would build one per request
# Documented, not re-serialized: endpoint.answer builds exactly this shape (the contract test checks
# every answer against the schema), and a marshmallow dump per article view is pure overhead.
@blp.alt_response(200, schema=AccessAnswerSchema, success=True, description="OK")
def post_access(data: dict[str, Any]) -> Any:
    """Whether the reader may read the article at its level, why, until when, their meter, the
    appeal flag and the sign-up offer; when not allowed, an access token for the widget's gate."""
    return endpoint.answer(current_db(), current_settings(), data, clock.now()), 200, NO_STORE


@blp.route("/access/token", methods=["POST"])
@require_role("site")
@blp.arguments(ReaderRequestSchema)
@blp.response(200, TokenSchema)
def post_access_token(data: dict[str, Any]) -> Any:
    """A signed access token (JWT, EdDSA) the site verifies offline with /.well-known/jwks.json."""
    with current_db().transaction(readonly=True) as session:
        token, expires = issue_access_token(session, current_settings(), data["reader"])
    return {"token": token, "expires_at": isoformat(expires)}, 200, NO_STORE


@blp.route("/appeals/dismiss", methods=["POST"])
@require_role("site")
@blp.arguments(ReaderRequestSchema)
@blp.response(200, DismissedSchema)
def post_dismiss(data: dict[str, Any]) -> Any:
    """The reader closed the support appeal: hide it for `[access] dismiss_days`."""
    reader = data["reader"]
    with current_db().transaction() as session:
        outcome = dismissals.dismiss_appeal(session, current_settings(), reader)
        until = dismissals.dismissed_until(session, current_settings(), reader)
    return {"reader": reader, "outcome": outcome, "until": isoformat(until)}


def _check_reader(reader: str) -> None:
    try:
        validate_identifier(reader)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, list) else ["Invalid."]
        raise bad_request("reader", str(messages[0])) from None


@comps_blp.route("/<reader:reader>", methods=["PUT"])
@require_role("admin")
@comps_blp.arguments(CompInSchema)
@comps_blp.response(200, CompSchema, description="Changed.")
@comps_blp.alt_response(201, schema=CompSchema, description="Granted.")
def put_comp(data: dict[str, Any], reader: str) -> Any:
    """Give a reader complimentary access until a date (inclusive) or datetime."""
    _check_reader(reader)
    with current_db().transaction() as session:
        comp, outcome = comps.grant_comp(
            session, reader, until=data["until"], note=data["note"], granted_by=g.caller.name
        )
        body = comps.comp_body(reader, comp)
    return body, 201 if outcome == "granted" else 200


@comps_blp.route("/<reader:reader>", methods=["GET"])
@require_role("admin")
@comps_blp.response(200, CompSchema)
@comps_blp.alt_response(404, schema="Error", description="No comp for this reader.")
def get_comp(reader: str) -> Any:
    """A reader's comp."""
    _check_reader(reader)
    with current_db().transaction(readonly=True) as session:
        comp = comps.find_comp(session, reader)
        if comp is None:
            raise not_found(f"No comp for reader {reader!r}.", "reader")
        return comps.comp_body(reader, comp)


@comps_blp.route("/<reader:reader>", methods=["DELETE"])
@require_role("admin")
@comps_blp.response(200, RevokedSchema)
@comps_blp.alt_response(404, schema="Error", description="No comp for this reader.")
def delete_comp(reader: str) -> Any:
    """End a reader's comp now."""
    _check_reader(reader)
    with current_db().transaction() as session:
        outcome = comps.revoke_comp(session, reader)
    if outcome == "not_found":
        raise not_found(f"No comp for reader {reader!r}.", "reader")
    return {"reader": reader, "outcome": outcome}


def init_app(app: Flask, api: Any) -> None:
    """Register the routes."""
    api.register_blueprint(blp)
    api.register_blueprint(comps_blp)
    endpoint.install(app)
