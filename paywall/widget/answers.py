"""What GET /support/appeal answers for an access token: the footer appeal, the meter line, the gate.

Pure functions of the token's claims and the settings (no Flask, no database), so the rules are
tested without HTTP. The token is ours (signed), so its claims are trusted; what they may name is
still checked: a site reader id, or an anonymous browser's key (" anon:" + id) for meter and
dismissal only. An anonymous key is never put in a link that could name a buyer: the Subscribe and
Donate links carry the token itself, and /subscribe and /donate treat an anonymous token as a guest.

A footer or gate experiment's variant copy replaces the configured copy, and every answer that
may show something carries an ``ask`` (paywall/experiments/asks.py) for the widget's events; the
links carry it too (``&ask=``), so Checkout knows the channel, experiment and variant clicked.

The gate answers a denial (``meter_exhausted``, ``supporters_only``, ``registration_required``)
decided for an article (the token's ``art`` claim; see ``gated``) and is never dismissable: closing
the appeal hides the appeal only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from marshmallow import ValidationError

from paywall import signing
from paywall.access.anonymous import ANON_PREFIX, valid_browser_id
from paywall.access.settings import access_settings
from paywall.checkout.plans import offered_plans
from paywall.config import Settings
from paywall.experiments.definition import HOLDBACK, Experiment
from paywall.schemas import validate_identifier
from paywall.signin.settings import gate_settings
from paywall.widget.settings import appeal_settings

# Access tokens from the site or the browser access check, and personal links from the mailer.
TOKEN_PURPOSES = ("access", "reader-link")
DENIED_REASONS = ("meter_exhausted", "supporters_only", "registration_required")
# The widget's own words for the sign-in steps. Not in [gate] (whose keys are the copy a publisher
# tunes); sent with the gate so the script carries no copy of its own.
SIGNIN_COPY = {
    "email_label": "Your email address",
    "send_label": "Email me a code",
    "sending": "Sending…",
    "sent": "We have sent a 6-digit code to {email}. It is valid for a few minutes.",
    "code_label": "The 6-digit code",
    "code_submit": "Sign in",
    "checking": "Checking the code…",
    "signed_in": "You are signed in.",
    "signed_in_no_access": "You are signed in, but this article still needs a subscription.",
    "failed": "That did not work. Please check and try again.",
    "register_heading": "Sign up free with your email",
    "signin_heading": "Sign in with your email",
    "cancel_label": "Cancel",
}


@dataclass(frozen=True)
class Subject:
    """Whom an access token speaks for: ``key`` keys the meter and dismissal; ``anonymous`` says
    it is a browser's anonymous key (never a reader)."""

    key: str
    anonymous: bool
    claims: dict[str, Any]


def token_subject(settings: Settings, token: str | None) -> Subject:
    """The subject of a valid access (or mail link) token; raises signing.InvalidToken otherwise."""
    if not token:
        raise signing.InvalidToken("missing token")
    claims = signing.verify(settings, token, purpose=TOKEN_PURPOSES)
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise signing.InvalidToken("token names nobody")
    if sub.startswith(ANON_PREFIX):
        if not valid_browser_id(sub[len(ANON_PREFIX) :]):
            raise signing.InvalidToken("token names nobody")
        return Subject(key=sub, anonymous=True, claims=claims)
    try:
        validate_identifier(sub)
    except ValidationError:
        raise signing.InvalidToken("token names nobody") from None
    return Subject(key=sub, anonymous=False, claims=claims)


def reader_links(settings: Settings, token: str, return_to: str | None) -> dict[str, str]:
    """Subscribe (only while a plan can be bought) and Donate URLs carrying the token and return_to."""
    base = settings.server.public_url.rstrip("/")
    query = {"token": token}
    if return_to:
        query["return_to"] = return_to
    links = {"donate_url": f"{base}/donate?{urlencode(query)}"}
    if offered_plans(settings):
        links["subscribe_url"] = f"{base}/subscribe?{urlencode(query)}"
    return links


def _fill(text: str, **values: int) -> str:
    # Plain replacement: a publisher's stray brace in the copy must not become a 500.
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def _meter(claims: dict[str, Any]) -> tuple[int, int] | None:
    meter = claims.get("meter")
    if not isinstance(meter, dict):
        return None
    used, limit = meter.get("used"), meter.get("limit")
    if isinstance(used, int) and isinstance(limit, int) and not isinstance(used, bool):
        return used, limit
    return None


def gated(claims: dict[str, Any]) -> bool:
    """Whether the token denies an article: a denial decided for one (its ``art`` claim).

    A token made without an article (POST /v1/access/token) says what the next new article would
    get, not this page's: a site passes it for a page it rendered in full (a re-read, or the last
    free article), so it never brings the gate, only the appeal with "0 of 3 free articles left".
    """
    return claims.get("reason") in DENIED_REASONS and isinstance(claims.get("art"), str)


def gate_headline(settings: Settings, claims: dict[str, Any]) -> str:
    """The headline that fits the denial: the meter, supporters only, or registration."""
    gate = gate_settings(settings)
    reason = claims.get("reason")
    if reason == "supporters_only":
        return gate.supporters_headline
    if reason == "registration_required":
        return gate.registered_headline
    access = access_settings(settings)
    used, limit = _meter(claims) or (access.free_articles_per_month, access.free_articles_per_month)
    # The anonymous meter moves to the reader on sign-up, so "more" is what is left of the
    # registered allowance after what this browser already read.
    more = access.registered_free_articles_per_month - used
    if claims.get("reg") is True and more > 0:
        return _fill(gate.register_headline, more=more, limit=limit)
    return _fill(gate.metered_headline, limit=limit)


def register_offered(claims: dict[str, Any]) -> bool:
    """Whether the gate offers "Sign up free": when signing up opens this article, never for a
    supporters-only one (the token's ``reg`` says signing up gives more articles in general)."""
    reason = claims.get("reason")
    if reason == "registration_required":
        return True
    return reason == "meter_exhausted" and claims.get("reg") is True


def gate_body(
    settings: Settings,
    claims: dict[str, Any],
    links: dict[str, str],
    copy: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The gate for a denied token: headline, text, Subscribe/Donate, sign in, and sign up when offered.

    ``copy``: a gate experiment's variant copy, over [gate]'s headline, text and button labels.
    """
    gate = gate_settings(settings)
    copy = copy or {}
    body: dict[str, Any] = {
        "reason": claims.get("reason"),
        "level": claims.get("lvl", "metered"),
        "headline": copy.get("headline") or gate_headline(settings, claims),
        "text": copy.get("text") or gate.text,
        "donate_label": copy.get("donate_label") or gate.donate_label,
        "donate_url": links["donate_url"],
        "signin": True,
        "signin_label": gate.signin_label,
        "register": register_offered(claims),
        "register_label": gate.register_label,
        "preview_paragraphs": gate.preview_paragraphs,
        "copy": SIGNIN_COPY,
    }
    if "subscribe_url" in links:
        label = copy.get("subscribe_label") or gate.subscribe_label
        body.update(subscribe_label=label, subscribe_url=links["subscribe_url"])
    return body


def meter_text(settings: Settings, claims: dict[str, Any]) -> str | None:
    """'2 of 3 free articles left this month' for a metered read, when ``[gate] show_meter``."""
    gate = gate_settings(settings)
    meter = _meter(claims)
    reading = claims.get("reason") == "metered" or (
        claims.get("reason") == "meter_exhausted" and not gated(claims)
    )
    if not gate.show_meter or not reading or meter is None:
        return None
    used, limit = meter
    return _fill(gate.meter_text, left=max(limit - used, 0), limit=limit)


def appeal_copy(
    settings: Settings, links: dict[str, str], copy: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The footer appeal's copy and links (the answer's ``show: true`` part); ``copy``: a variant's
    copy, over [appeal]'s."""
    conf = appeal_settings(settings)
    copy = copy or {}
    body: dict[str, Any] = {
        "show": True,
        "headline": copy.get("headline") or conf.headline,
        "text": copy.get("text") or conf.text,
        "region_label": copy.get("region_label") or conf.region_label,
        "donate_label": copy.get("donate_label") or conf.donate_label,
        "close_label": conf.close_label,
        "donate_url": links["donate_url"],
    }
    if "subscribe_url" in links:
        # No Subscribe button while no plan can be bought (e.g. only the example plan's placeholder).
        label = copy.get("subscribe_label") or conf.subscribe_label
        body.update(subscribe_label=label, subscribe_url=links["subscribe_url"])
    return body


def with_ask(links: dict[str, str], ask: str) -> dict[str, str]:
    """The Subscribe/Donate links with ``&ask=``: Checkout is attributed to the channel clicked."""
    return {name: f"{url}&{urlencode({'ask': ask})}" for name, url in links.items()}


def footer_arm(settings: Settings, claims: dict[str, Any]) -> tuple[Experiment | None, str]:
    """The footer experiment and arm (a variant or ``holdback``) the token's access decision
    assigned; (None, "") when none, or when it is no longer in the configuration."""
    name, arm = claims.get("appeal_experiment"), claims.get("appeal_variant")
    if not isinstance(name, str) or not isinstance(arm, str):
        return None, ""
    experiment = appeal_settings(settings).experiments.get(name)
    if experiment is None or (arm != HOLDBACK and experiment.variant(arm) is None):
        return None, ""
    return experiment, arm
