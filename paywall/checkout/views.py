"""HTTP for the site: GET /v1/plans, POST /v1/checkout/subscription|donation, POST /v1/portal."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_smorest import Api

from paywall import clock
from paywall.api import Blueprint
from paywall.auth import authorize, require_role
from paywall.checkout import limits, sessions
from paywall.checkout.plans import load_plans, offered_plans
from paywall.checkout.schemas import (
    CheckoutCreatedSchema,
    DonationCheckoutSchema,
    PlanListSchema,
    PortalCreatedSchema,
    PortalSchema,
    SubscriptionCheckoutSchema,
)
from paywall.checkout.settings import ratelimit_settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError, bad_request
from paywall.experiments.attribution import attribution

blp = Blueprint("checkout", __name__, url_prefix="/v1", description="Checkout and the customer portal")

STRIPE_FAILURES = {
    502: {"description": "Stripe failed or could not be reached (Stripe's message and request id)."},
    503: {"description": "Stripe is not configured (PAYWALL_STRIPE_SECRET_KEY)."},
}


def _caller_key() -> str | None:
    # The site may send its own Idempotency-Key (e.g. one per rendered button); it joins the hash.
    value = request.headers.get("Idempotency-Key")
    if value is not None and not 1 <= len(value) <= 200:
        raise bad_request("Idempotency-Key", "Must be 1 to 200 characters.", status=400)
    return value


@blp.route("/plans", methods=["GET"])
@require_role("site")
@blp.response(200, PlanListSchema)
def list_plans() -> Any:
    """The plans on offer ([plans.<name>] tables with a real price), for the site to show."""
    return {"plans": [plan.as_dict() for plan in offered_plans(current_settings()).values()]}


@blp.route("/checkout/subscription", methods=["POST"])
@require_role("site")
@blp.arguments(SubscriptionCheckoutSchema)
@blp.response(201, CheckoutCreatedSchema)
@blp.alt_response(404, description="No such plan.", schema="Error")
@blp.alt_response(502, description=STRIPE_FAILURES[502]["description"], schema="Error")
@blp.alt_response(503, description=STRIPE_FAILURES[503]["description"], schema="Error")
def create_subscription(data: dict[str, Any]) -> Any:
    """A Checkout Session for a plan; the reader's Stripe customer is reused when there is one."""
    settings = current_settings()
    plan = load_plans(settings).get(data["plan"])
    if plan is None:
        raise ApiError(404, "No such plan.", errors={"plan": ["No such plan."]}, type_="not-found")
    with current_db().transaction(readonly=True) as session:
        buyer = sessions.find_buyer(session, settings, data["reader"], data["email"])
    params = sessions.subscription_params(
        settings,
        plan,
        buyer,
        success_url=data["success_url"],
        cancel_url=data["cancel_url"],
        campaign=data["campaign"],
        appeal=attribution(settings, data["ask"], data["reader"], clock.now()),
    )
    key = sessions.idempotency_key("subscription", params, _caller_key())
    created = sessions.create_checkout_session(settings, params, key=key)
    return {"url": created.url, "session_id": created.session_id}


@blp.route("/checkout/donation", methods=["POST"])
@require_role("site")
@blp.arguments(DonationCheckoutSchema)
@blp.response(201, CheckoutCreatedSchema)
@blp.alt_response(429, description="Too many donation attempts for this reader.", schema="Error")
@blp.alt_response(502, description=STRIPE_FAILURES[502]["description"], schema="Error")
@blp.alt_response(503, description=STRIPE_FAILURES[503]["description"], schema="Error")
def create_donation(data: dict[str, Any]) -> Any:
    """A Checkout Session for a donation: once (payment) or monthly/yearly (subscription)."""
    settings = current_settings()
    with current_db().transaction(readonly=True) as session:
        buyer = sessions.find_buyer(session, settings, data["reader"], data["email"])
    params = sessions.donation_params(
        settings,
        buyer,
        amount=data["amount"],
        currency=data["currency"],
        interval=data["interval"],
        campaign=data["campaign"],
        success_url=data["success_url"],
        cancel_url=data["cancel_url"],
        appeal=attribution(settings, data["ask"], data["reader"], clock.now()),
    )
    key = sessions.idempotency_key("donation", params, _caller_key())
    created = sessions.create_checkout_session(settings, params, key=key)
    return {"url": created.url, "session_id": created.session_id}


@blp.route("/portal", methods=["POST"])
@require_role("site")
@blp.arguments(PortalSchema)
@blp.response(201, PortalCreatedSchema)
@blp.alt_response(404, description="The reader has no Stripe customer.", schema="Error")
@blp.alt_response(502, description=STRIPE_FAILURES[502]["description"], schema="Error")
@blp.alt_response(503, description=STRIPE_FAILURES[503]["description"], schema="Error")
def create_portal(data: dict[str, Any]) -> Any:
    """A customer-portal session, where the reader manages payment methods and subscriptions."""
    settings = current_settings()
    with current_db().transaction(readonly=True) as session:
        buyer = sessions.find_buyer(session, settings, data["reader"], None)
    if buyer.stripe_customer_id is None:
        raise ApiError(
            404,
            "This reader has no Stripe customer yet (nothing to manage).",
            errors={"reader": ["No Stripe customer."]},
            type_="not-found",
        )
    url = sessions.create_portal_session(settings, buyer.stripe_customer_id, return_url=data["return_url"])
    return {"url": url}


def _body_reader() -> str | None:
    # Only a caller with a site key may spend a reader's attempts: a keyless or wrong-role call is
    # a 401/403 here, before any limit counts it (else anyone could lock a reader out for an hour).
    authorize("site")
    body = request.get_json(silent=True)
    reader = body.get("reader") if isinstance(body, dict) else None
    return reader if isinstance(reader, str) and reader else None


def init_app(app: Flask, api: Api) -> None:
    """Register the API, and limit donations per reader (the site's own address is shared by all)."""
    api.register_blueprint(blp)
    conf = ratelimit_settings(settings_of(app))
    limits.limit(
        app,
        "checkout.create_donation",
        per_reader=conf.checkout_per_reader,
        reader_from=_body_reader,
    )
