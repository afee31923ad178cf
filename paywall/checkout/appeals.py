"""The appeal a reader page answers: which experiment, variant and channel a /donate or /subscribe
visit is attributed to (the appeal's ``?ask=``, a mail link's ``ask`` claim, else the reader's own
footer arm; paywall/experiments/attribution.py decides), and the amounts /donate offers a variant.

Apart from pages.py, which is about the forms, Checkout and /thanks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request

from paywall import clock, signing
from paywall.checkout.settings import donation_settings
from paywall.config import Settings
from paywall.experiments import attribution
from paywall.experiments.attribution import Attribution
from paywall.experiments.definition import Variant
from paywall.widget.answers import token_subject

# The tokens a reader page accepts: an access token from the site, or a personal link from the mailer.
READER_PURPOSES = ("access", "reader-link")


def offered_amounts(
    settings: Settings, currency: str, variant: Variant | None
) -> tuple[list[int], int | None]:
    """The preset amounts /donate offers in ``currency`` and the one preselected (minor units).

    A variant's presets in that currency (a plain list: [donations] default_currency only; or its
    table's entry for the currency) replace the currency's own, keeping only those within the
    currency's [donations.limits] min..max (none left: the currency's own); its default_amount in
    that currency, when within them, is preselected (and offered, if it is not a preset). Else the
    middle preset. A currency the variant names no amounts for keeps its own."""
    donations = donation_settings(settings)
    bounds = donations.bounds(currency)
    amounts = list(bounds.presets)
    if variant is not None:
        own = variant.presets_in(currency, donations.default_currency)
        amounts = [a for a in own if bounds.min <= a <= bounds.max] or amounts
        preselect = variant.default_in(currency, donations.default_currency)
        if preselect and bounds.min <= preselect <= bounds.max:
            if preselect not in amounts:
                amounts = sorted([*amounts, preselect])
            return amounts, preselect
    return amounts, amounts[(len(amounts) - 1) // 2] if amounts else None


def _subject(settings: Settings, token: str | None) -> str | None:
    """The access subject a site or mail token names (a reader id, or an anonymous browser's key)."""
    try:
        return token_subject(settings, token).key
    except signing.InvalidToken:
        return None


def link_ask(settings: Settings, token: str | None) -> tuple[str, dt.datetime] | None:
    """The ask a mailer link was sent with (its ``ask`` claim) and when the link was made: the ask is
    held to its lifetime at that time (the signed link has its own, longer one)."""
    if not token:
        return None
    try:
        claims = signing.verify(settings, token, purpose=READER_PURPOSES)
    except signing.InvalidToken:
        return None
    value, made = claims.get("ask"), claims.get("iat")
    if not isinstance(value, str) or not isinstance(made, int):
        return None
    return value, dt.datetime.fromtimestamp(made, dt.UTC)


def page_attribution(settings: Settings, values: Any, token: str | None) -> Attribution | None:
    """The attribution of a reader page opened with ``?ask=`` (the appeal's link) or a mail link's
    ``ask`` claim, else the token subject's footer arm (paywall/experiments/attribution.py)."""
    subject, now = _subject(settings, token), clock.now()
    given = values.get("ask")
    found = None
    if isinstance(given, str) and given:
        found = attribution.from_ask(settings, given, subject, now)
    mailed = link_ask(settings, token) if found is None else None
    if mailed is not None:
        found = attribution.from_ask(settings, mailed[0], subject, now, checked_at=mailed[1])
    return found if found is not None else attribution.from_subject(settings, subject, now)


def posted_attribution(settings: Settings, reader: str | None) -> Attribution | None:
    """The attribution a reader page's form posts back (the ask it carries) for the form's reader."""
    return attribution.resolve(settings, request.form.get("ask") or None, reader, clock.now())
