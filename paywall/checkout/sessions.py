"""Checkout and customer-portal sessions: the exact parameters sent to Stripe, and the calls.

Nothing here imports Flask: views, pages and tests call these functions directly. Reads take a
Session and never commit; the Stripe calls are made after the caller's transaction has ended, so a
slow Stripe never holds a database connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall import clock, money
from paywall.checkout.plans import Plan
from paywall.checkout.settings import checkout_settings, donation_settings
from paywall.config import Settings
from paywall.errors import ApiError, bad_request, not_configured
from paywall.models import Reader, StripeCustomer
from paywall.stripe_gateway import make_client, stripe_error

log = logging.getLogger(__name__)

# A reader waits on these calls. stripe-python makes up to 3 attempts (2 retries with backoff,
# under one idempotency key); 3 x 6 s plus the backoff stays inside gunicorn's 30 s worker timeout.
CHECKOUT_TIMEOUT_SECONDS = 6.0
# Requests with the same parameters inside one window share an idempotency key, so a double click
# (or a retried form post) gets the same Checkout Session instead of a second one.
IDEMPOTENCY_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Buyer:
    """Who is paying: the site's reader id (if known), their Stripe customer, else an email."""

    reader: str | None
    stripe_customer_id: str | None
    email: str | None


@dataclass(frozen=True)
class CreatedSession:
    url: str
    session_id: str


def find_stripe_customer(session: Session, settings: Settings, reader: Reader) -> str | None:
    """The reader's most recent live (not deleted) Stripe customer id in this Stripe mode, if any."""
    query = select(StripeCustomer.stripe_customer_id).where(
        StripeCustomer.reader_id == reader.id, StripeCustomer.deleted_at.is_(None)
    )
    livemode = settings.stripe_livemode
    if livemode is not None:
        # A test-mode customer id is unknown to a live key (and the reverse).
        query = query.where(StripeCustomer.livemode.is_(livemode))
    query = query.order_by(StripeCustomer.stripe_created.desc().nulls_last(), StripeCustomer.id.desc())
    return session.scalars(query.limit(1)).first()


def find_buyer(session: Session, settings: Settings, reader: str | None, email: str | None) -> Buyer:
    """The Stripe customer to reuse for ``reader``, else the email to prefill (given, or on file)."""
    if reader is None:
        return Buyer(reader=None, stripe_customer_id=None, email=email)
    row = session.scalar(select(Reader).where(Reader.external_id == reader))
    if row is None:
        return Buyer(reader=reader, stripe_customer_id=None, email=email)
    customer = find_stripe_customer(session, settings, row)
    return Buyer(reader=reader, stripe_customer_id=customer, email=email or row.email)


def _public(settings: Settings, path: str) -> str:
    return settings.server.public_url.rstrip("/") + path


def thanks_url(settings: Settings, *, kind: str | None = None, return_to: str | None = None) -> str:
    """Checkout's success_url: /thanks with the session id (Stripe fills in the placeholder), the
    kind for donations and, when known, the article to return to (already checked by the caller)."""
    before = urlencode({"kind": kind} if kind else {})
    after = urlencode({"return_to": return_to} if return_to else {})
    # The placeholder must reach Stripe unencoded: it is replaced only when spelled exactly so.
    query = "&".join(part for part in (before, "session_id={CHECKOUT_SESSION_ID}", after) if part)
    return _public(settings, "/thanks?" + query)


def _buyer_params(buyer: Buyer) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if buyer.reader is not None:
        params["client_reference_id"] = buyer.reader
    if buyer.stripe_customer_id:
        params["customer"] = buyer.stripe_customer_id
    elif buyer.email:
        params["customer_email"] = buyer.email
    return params


def _metadata(appeal: Mapping[str, str] | None, **values: str | None) -> dict[str, str]:
    # Stripe treats an empty metadata value as "unset"; absent values are simply left out. The
    # appeal keys (paywall/experiments/attribution.py) go wherever the campaign goes.
    found = {key: value for key, value in values.items() if value}
    found.update({key: value for key, value in (appeal or {}).items() if value})
    return found


def subscription_params(
    settings: Settings,
    plan: Plan,
    buyer: Buyer,
    *,
    success_url: str | None = None,
    cancel_url: str | None = None,
    campaign: str | None = None,
    return_to: str | None = None,
    appeal: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Checkout Session parameters for a plan (mode subscription); ``return_to`` (a checked article
    URL) goes into the success URL, and is where a reader who cancels goes back to; ``appeal`` is
    the attribution's metadata (paywall.experiments.attribution)."""
    if not plan.configured:
        raise not_configured(f"plans.{plan.name}.price", f"The plan {plan.name!r}")
    metadata = _metadata(appeal, kind="subscription", reader=buyer.reader, plan=plan.name, campaign=campaign)
    return {
        "mode": "subscription",
        "line_items": [{"price": plan.price, "quantity": 1}],
        **_buyer_params(buyer),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": success_url or thanks_url(settings, return_to=return_to),
        "cancel_url": cancel_url or return_to or _public(settings, "/subscribe"),
    }


def check_donation(settings: Settings, amount: int, currency: str) -> str:
    """The accepted, lower-cased currency; a 422 naming ``currency`` or ``amount`` otherwise."""
    donations = donation_settings(settings)
    code = currency.lower()
    if code not in donations.currencies:
        accepted = ", ".join(c.upper() for c in donations.currencies)
        raise bad_request("currency", f"Not accepted; use one of {accepted}.")
    bounds = donations.bounds(code)
    if not bounds.min <= amount <= bounds.max:
        raise bad_request(
            "amount",
            f"Must be between {money.display(bounds.min, code)} and {money.display(bounds.max, code)} "
            "(in minor units).",
        )
    return code


def donation_params(
    settings: Settings,
    buyer: Buyer,
    *,
    amount: int,
    currency: str,
    interval: str,
    campaign: str | None = None,
    success_url: str | None = None,
    cancel_url: str | None = None,
    return_to: str | None = None,
    appeal: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Checkout Session parameters for a donation: mode payment once, mode subscription monthly/yearly
    (``return_to`` and ``appeal`` as for a plan)."""
    code = check_donation(settings, amount, currency)
    name = donation_settings(settings).product_name
    metadata = _metadata(appeal, kind="donation", reader=buyer.reader, campaign=campaign)
    price_data: dict[str, Any] = {"currency": code, "unit_amount": amount, "product_data": {"name": name}}
    params: dict[str, Any] = {}
    if interval == "once":
        params["mode"] = "payment"
        params["submit_type"] = "donate"
        params["payment_intent_data"] = {"metadata": metadata}
    elif interval in ("month", "year"):
        params["mode"] = "subscription"
        price_data["recurring"] = {"interval": interval}
        params["subscription_data"] = {"metadata": metadata}
    else:
        raise bad_request("interval", "Must be one of once, month, year.")
    params["line_items"] = [{"price_data": price_data, "quantity": 1}]
    params.update(_buyer_params(buyer))
    if interval == "once" and not buyer.stripe_customer_id:
        # Without a customer, a one-off payment leaves only a "guest" behind; a customer lets the
        # sync link the gift to the donor (receipts, later portal access).
        params["customer_creation"] = "always"
    params["metadata"] = metadata
    params["success_url"] = success_url or thanks_url(settings, kind="donation", return_to=return_to)
    params["cancel_url"] = cancel_url or return_to or _public(settings, "/donate")
    return params


def idempotency_key(kind: str, params: dict[str, Any], discriminator: str | None = None) -> str:
    """A key shared by identical requests within one short time window (a double click).

    The parameters are hashed whole, so two different requests never share a key (Stripe would
    refuse the second). With nothing that tells one anonymous buyer from another (no reader, no
    email, no caller key or form nonce), the key is random: strangers must never share a session.
    """
    anonymous = (
        "client_reference_id" not in params
        and "customer" not in params
        and "customer_email" not in params
        and not discriminator
    )
    if anonymous:
        return f"paywall-{kind}-{uuid.uuid4().hex}"
    bucket = int(clock.now().timestamp()) // IDEMPOTENCY_WINDOW_SECONDS
    material = json.dumps(
        {"kind": kind, "params": params, "discriminator": discriminator or "", "bucket": bucket},
        sort_keys=True,
        separators=(",", ":"),
    )
    return f"paywall-{kind}-{hashlib.sha256(material.encode()).hexdigest()[:48]}"


def create_checkout_session(settings: Settings, params: dict[str, Any], *, key: str) -> CreatedSession:
    """Create the Checkout Session; 502 on any Stripe failure, 503 when Stripe is not configured."""
    client = make_client(settings, timeout=CHECKOUT_TIMEOUT_SECONDS)
    try:
        created = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key})  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning("Stripe refused a Checkout Session (%s, request %s)", type(exc).__name__, exc.request_id)
        raise stripe_error(exc) from None
    if not created.url:
        raise ApiError(502, "Stripe: the Checkout Session has no URL.", type_="stripe-error")
    return CreatedSession(url=created.url, session_id=created.id)


def portal_return_url(settings: Settings) -> str:
    """Where the portal sends readers back: [checkout] portal_return_url, site_url, else /thanks."""
    conf = checkout_settings(settings)
    return conf.portal_return_url or conf.site_url or _public(settings, "/thanks?from=portal")


def create_portal_session(settings: Settings, customer: str, *, return_url: str | None = None) -> str:
    """The URL of a customer-portal session for ``customer``; 502/503 as for Checkout."""
    client = make_client(settings, timeout=CHECKOUT_TIMEOUT_SECONDS)
    params = {"customer": customer, "return_url": return_url or portal_return_url(settings)}
    try:
        created = client.v1.billing_portal.sessions.create(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning("Stripe refused a portal session (%s, request %s)", type(exc).__name__, exc.request_id)
        raise stripe_error(exc) from None
    return str(created.url)
