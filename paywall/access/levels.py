"""Access levels: what the site asks of a reader for one article, after the entitlements.

The site says per article (``"level"`` in POST /v1/access and /support/access):

- ``free``: everyone may read it; reason ``free``; the meter is neither read against nor spent.
- ``metered`` (the default): the rules as they always were. A reader with an entitlement reads;
  anyone else spends their monthly allowance: ``[access] free_articles_per_month``, or for a
  registered reader ``registered_free_articles_per_month`` (0: the same as everyone).
- ``registered``: an entitlement reads; a registered reader then has their allowance; anyone else
  is denied ``registration_required``.
- ``supporters``: comp, subscription, trial, grace period or donation; else ``supporters_only``.

Registered means ``readers.registered_at`` is set: the reader signed in here, or the site vouched
for them (PUT /v1/readers). An anonymous browser id never is (paywall/access/anonymous.py).

``register`` in the answer says signing up would give this reader more: they are not registered,
have no entitlement, and either the level needs registration or registered readers get a larger
allowance. The gate offers "Sign up free" on it.
"""

from __future__ import annotations

import datetime as dt

from paywall.access.facts import LEVELS, Decision, Meter, ReaderState, Step, meter_period
from paywall.access.settings import AccessSettings


def allowance(settings: AccessSettings, registered: bool) -> int:
    """Free articles a month for a reader without an entitlement."""
    extra = settings.registered_free_articles_per_month
    return extra if registered and extra > 0 else settings.free_articles_per_month


def register_offer(state: ReaderState, level: str, settings: AccessSettings) -> bool:
    """Whether signing up would give this reader (without an entitlement) more."""
    if state.registered:
        return False
    return level == "registered" or allowance(settings, True) > allowance(settings, False)


def _who(state: ReaderState) -> str:
    if state.anonymous:
        return "an anonymous browser"
    return "a registered reader" if state.registered else "a reader who has not registered"


def level_step(state: ReaderState, level: str, settings: AccessSettings) -> Step:
    """The trace line that says which level applies and what it means for this reader."""
    who = _who(state)
    limit = allowance(settings, state.registered)
    if level == "free":
        why = "free: every reader may read it; the meter is not used"
    elif level == "metered":
        why = f"metered: {who} without an entitlement has {limit} free articles a month"
    elif level == "registered":
        then = f"then {limit} free articles a month" if state.registered else "denied without an entitlement"
        why = f"registered: registered readers only; {who}: {then}"
    elif level == "supporters":
        why = "supporters: comp, subscription, trial, grace period or donation only"
    else:
        raise ValueError(f"unknown access level {level!r} (one of {', '.join(LEVELS)})")
    return Step("level", True, why)


def apply_level(
    state: ReaderState,
    now: dt.datetime,
    settings: AccessSettings,
    level: str,
    grant: tuple[str, dt.datetime | None] | None,
    steps: list[Step],
    appeal: bool,
    appeal_step: Step,
) -> Decision:
    """The decision at ``level``, given the entitlement ``grant`` (None: none) and the trace so far."""
    register = grant is None and register_offer(state, level, settings)

    def done(allowed: bool, reason: str, last: Step, until: dt.datetime | None = None) -> Decision:
        trace = (*steps, last, appeal_step)
        return Decision(allowed, reason, until, None, appeal, trace, level=level, register=register)

    if level == "free":
        return done(True, "free", Step("metered", False, "not needed: a free article"))
    if grant is not None:
        return done(True, grant[0], Step("metered", False, f"not needed: {grant[0]} access"), grant[1])
    if level == "supporters":
        return done(
            False, "supporters_only", Step("supporters", False, "no entitlement: for supporters only")
        )
    if level == "registered" and not state.registered:
        return done(
            False, "registration_required", Step("registered", False, f"{_who(state)}: sign up first")
        )
    return _metered(state, now, settings, level, steps, appeal, appeal_step, register)


def _metered(
    state: ReaderState,
    now: dt.datetime,
    settings: AccessSettings,
    level: str,
    steps: list[Step],
    appeal: bool,
    appeal_step: Step,
    register: bool,
) -> Decision:
    """The monthly allowance: a re-read is free, a new article spends one, none left is denied."""
    period, resets = meter_period(now, settings)
    limit = allowance(settings, state.registered)
    used = len(state.meter_articles)
    article = state.article
    records = False
    if article is not None and article in state.meter_articles:
        allowed, meter = True, Meter(used, limit, resets)
        step = Step("metered", True, f"{article!r} was already read in {period}: free again")
    elif used < limit:
        records = article is not None
        allowed, meter = True, Meter(used + 1 if records else used, limit, resets)
        what = f"article {meter.used} of {limit}" if records else f"{used} of {limit} used, none counted"
        step = Step("metered", True, f"{what} in {period}")
    else:
        allowed, meter = False, Meter(used, limit, resets)
        step = Step("metered", False, f"all {limit} free articles of {period} used")
    return Decision(
        allowed,
        "metered" if allowed else "meter_exhausted",
        None,
        meter,
        appeal,
        (*steps, step, appeal_step),
        records_read=records,
        level=level,
        register=register,
    )
