"""Which appeal a Checkout is attributed to: the Stripe metadata ``appeal_experiment``,
``appeal_variant`` and ``appeal_channel``, and the variant whose presets /donate offers.

The order of evidence:

1. A valid, non-preview ask (the Subscribe/Donate link of the footer or the gate, ``?ask=``; a
   mail link's ``ask`` claim; the site's ``ask`` body field): its channel, experiment and variant.
   The ask must name the buyer's own subject when the buyer has one (a reader id, or an anonymous
   browser's key); an ask for somebody else is ignored, never an error. An ask made while no
   experiment ran on its channel (the plain copy) still names the channel; its experiment and
   variant are then the subject's arm in the footer experiment running now, if any, so every
   payment of an assigned subject counts for its arm (intention to treat, like ``direct`` below).
2. Else, when a footer experiment runs and the buyer has a subject: the subject's arm in it, with
   channel ``direct`` (a holdback reader who gives anyway is ``holdback``: what the lift is
   measured against).
3. Else nothing: no keys at all (Stripe treats an empty metadata value as unset).

A bad, expired or foreign ask never fails a Checkout: it is ignored. Pure functions of the
settings and their arguments (no Flask, no database).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from paywall.config import Settings
from paywall.experiments.asks import Ask, InvalidAsk, decode_ask, encode_ask
from paywall.experiments.assignment import assignment_for
from paywall.experiments.definition import Variant
from paywall.widget.settings import appeal_settings

# The channel of a payment by an assigned subject that came through no ask.
DIRECT = "direct"
# The Stripe metadata keys (and the columns the sync stores them in).
METADATA_KEYS = ("appeal_experiment", "appeal_variant", "appeal_channel")


@dataclass(frozen=True)
class Attribution:
    """What a Checkout is attributed to; ``experiment``/``variant`` are "" for the plain copy."""

    channel: str
    experiment: str
    variant: str
    # Whose arm it is (the ask's subject, or the buyer's): carried on to the form's POST.
    subject: str

    def metadata(self) -> dict[str, str]:
        """The Stripe metadata: only the keys with a value."""
        values = zip(METADATA_KEYS, (self.experiment, self.variant, self.channel), strict=True)
        return {key: value for key, value in values if value}


def from_ask(
    settings: Settings,
    token: str,
    subject: str | None,
    now: dt.datetime,
    *,
    checked_at: dt.datetime | None = None,
) -> Attribution | None:
    """What ``token`` attributes a Checkout by ``subject`` (None: a guest) to; None when it is not a
    valid, non-preview ask of this subject. ``checked_at`` is when the ask is held to its lifetime,
    when not ``now``: a mail link's ask is checked at the time the (signed, longer-lived) link was made."""
    try:
        ask = decode_ask(settings, token, checked_at or now)
    except InvalidAsk:
        return None
    if ask.preview or not ask.channel or not ask.subject:
        return None
    if subject is not None and ask.subject != subject:
        return None
    if ask.experiment:
        return Attribution(ask.channel, ask.experiment, ask.variant, ask.subject)
    arm = assignment_for(settings, "footer", ask.subject, now)
    if arm is None:
        return Attribution(ask.channel, "", "", ask.subject)
    return Attribution(ask.channel, arm.experiment.name, arm.variant, ask.subject)


def from_subject(settings: Settings, subject: str | None, now: dt.datetime) -> Attribution | None:
    """The subject's arm in the footer experiment running now, channel ``direct``; None without either."""
    if subject is None:
        return None
    arm = assignment_for(settings, "footer", subject, now)
    if arm is None:
        return None
    return Attribution(DIRECT, arm.experiment.name, arm.variant, subject)


def resolve(
    settings: Settings, ask_token: str | None, subject: str | None, now: dt.datetime
) -> Attribution | None:
    """The attribution of a Checkout by ``subject`` (None: a guest) that came through ``ask_token``."""
    found = from_ask(settings, ask_token, subject, now) if ask_token else None
    return found if found is not None else from_subject(settings, subject, now)


def attribution(
    settings: Settings, ask_token: str | None, subject: str | None, now: dt.datetime
) -> dict[str, str]:
    """The Checkout metadata ``appeal_experiment``/``appeal_variant``/``appeal_channel`` ({} when none)."""
    found = resolve(settings, ask_token, subject, now)
    return found.metadata() if found is not None else {}


def carried_ask(settings: Settings, found: Attribution, now: dt.datetime) -> str:
    """A fresh ask naming ``found``, for a form to post back: the ask a page was opened with may
    expire before the reader submits (or be a mail link's, checked at the link's time), and a
    ``direct`` arm of an anonymous browser has nothing else that would carry it (the form token
    names readers only)."""
    return encode_ask(settings, Ask(found.channel, found.experiment, found.variant, found.subject, now))


def variant_of(settings: Settings, found: Attribution | None) -> Variant | None:
    """The configured variant ``found`` names (None: no experiment, holdback, or no longer configured)."""
    if found is None or not found.experiment:
        return None
    experiment = appeal_settings(settings).experiments.get(found.experiment)
    return experiment.variant(found.variant) if experiment is not None else None
