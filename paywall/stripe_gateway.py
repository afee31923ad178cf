"""The one place that talks to Stripe's API: a configured ``StripeClient`` and its error mapping.

No module-level ``stripe.api_key``: each caller asks for a client built from the settings, with the
API base from ``PAYWALL_STRIPE_API_BASE`` (tests point it at a local server).
"""

from __future__ import annotations

from typing import Any

import stripe

from paywall.config import Settings
from paywall.errors import ApiError, not_configured

# Seconds to wait for Stripe before giving up (the caller answers 502).
STRIPE_TIMEOUT_SECONDS = 20
# stripe-python retries idempotent-safe failures (connection errors, 409, 429, 5xx) with backoff
# and sends an idempotency key on POSTs, so retries never create a second object.
STRIPE_MAX_RETRIES = 2


def make_client(settings: Settings, *, timeout: float = STRIPE_TIMEOUT_SECONDS) -> stripe.StripeClient:
    """A StripeClient for these settings; 503 ApiError when no secret key is set."""
    key = settings.secrets.stripe_secret_key
    if not key:
        raise not_configured("PAYWALL_STRIPE_SECRET_KEY", "Stripe")
    base = settings.stripe.api_base.rstrip("/")
    return stripe.StripeClient(
        key,
        base_addresses={"api": base, "files": base, "connect": base, "meter_events": base},
        max_network_retries=STRIPE_MAX_RETRIES,
        http_client=stripe.new_default_http_client(timeout=timeout),
    )


def stripe_error(exc: stripe.StripeError) -> ApiError:
    """A 502 problem carrying Stripe's message and request id (never a 500)."""
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):
        message = "Stripe could not be reached."
    extra: dict[str, Any] = {"stripe_request_id": exc.request_id}
    if exc.code:
        extra["stripe_code"] = exc.code
    return ApiError(502, f"Stripe: {message}", type_="stripe-error", title="Bad Gateway", extra=extra)
