"""The access rules: ``decide(state, now, settings, level)``, a pure function of what we know about a reader.

First match wins: comp, subscription / trial, grace period, donation; then what the article's
level allows a reader without an entitlement (paywall/access/levels.py): a free article, the
metered allowance, a registration wall, or supporters only. The appeal flag is worked out beside
the rules from the whole state (a comped subscriber is still a subscriber). The trace starts with
the level, and every rule adds a line saying why it did or did not apply, so an operator can
answer "why was I paywalled?" from the answer alone.

Rules in detail (docs/access.md says the same for site owners):

- ``comp``: a staff comp whose ``until`` is still ahead (``now < until``).
- ``subscription`` / ``trial``: a Stripe subscription of kind ``subscription`` with status ``active``
  (until ``current_period_end``) or ``trialing`` (until ``trial_end``). One set to cancel at period
  end ends exactly at that end. One that renews is given ``renewal_leeway_hours`` past the end,
  because Stripe renews a little after the period ends and the sync may lag; paywalling a paying
  subscriber for that hour every month is the complaint we exist to prevent.
- A paused subscription grants nothing while paused: status ``paused`` (Stripe's status for a trial
  that ended without a payment method), or collection paused with ``pause_collection`` (the
  customer portal's pause: Stripe leaves the status ``active`` and bills nothing, whatever the
  behavior, keep_as_draft, mark_uncollectible or void). A collection pause with ``resumes_at`` is
  over from ``resumes_at`` on (``now >= resumes_at``), even before Stripe's update clearing it
  arrives: from then on the subscription is what its status says. A recurring donation whose
  collection is paused is not a current donor either (the appeal shows).
- A subscription whose payment for the current period (paid at or after ``current_period_start``)
  was refunded in full or lost in a dispute grants nothing: "a refund ends the access it paid for".
- ``grace_period``: status ``past_due`` or ``unpaid``, until ``grace_period_days`` after the grace
  start. The grace start is ``payment_failed_at`` (the first failed payment, as the sync records it);
  when the sync has not recorded it, ``current_period_start``: Stripe moves the period forward when
  it bills the renewal, so the unpaid period starts when the failed renewal was attempted. Only when
  both are missing do we fall back to ``current_period_end``.
- ``donation``: a donation payment (one-off or recurring; a recurring donation's Stripe subscription
  is donor perks, not a subscription) not refunded in full and not lost in a dispute, paid less than
  ``donation_access_days`` ago (0 turns donor access off); until ``paid_at + donation_access_days``.
- ``metered``: ``free_articles_per_month`` distinct articles per calendar month in
  ``meter_timezone`` (a registered reader: ``registered_free_articles_per_month``); an article
  already read this month is free again. Past the allowance: denied, ``meter_exhausted``.
- An anonymous browser (client mode) has no entitlements at all: only its meter and dismissal.

Appeal: false when the reader has comp, subscription, trial or grace access (a subscriber whose card
failed should be asked to fix the card, not to subscribe), an active recurring donation, a valid
donation less than ``appeal_pause_days`` old, or dismissed the appeal less than ``dismiss_days`` ago.
"""

from __future__ import annotations

import datetime as dt

from paywall.access import levels
from paywall.access.facts import (
    ALLOWED_REASONS,
    DEFAULT_LEVEL,
    DENIED_REASONS,
    DONOR_STATUSES,
    ENTITLEMENTS,
    GRACE_STATUSES,
    LEVELS,
    CompFact,
    Decision,
    Meter,
    PaymentFact,
    ReaderState,
    Step,
    SubscriptionFact,
    at,
    dismissal_active,
    meter_period,
)
from paywall.access.settings import AccessSettings

# The facts live in paywall/access/facts.py; callers have always imported them from here.
__all__ = [
    "ALLOWED_REASONS",
    "DEFAULT_LEVEL",
    "DENIED_REASONS",
    "ENTITLEMENTS",
    "LEVELS",
    "CompFact",
    "Decision",
    "Meter",
    "PaymentFact",
    "ReaderState",
    "Step",
    "SubscriptionFact",
    "decide",
    "dismissal_active",
    "meter_period",
]

Grant = tuple[str, dt.datetime | None]


def _subscription_payment_voided(sub: SubscriptionFact, payments: tuple[PaymentFact, ...]) -> str | None:
    """Why the payment for ``sub``'s current period no longer counts, or None.

    The latest payment of the subscription made in its current period decides: a later good payment
    (the reader paid again after a refund) restores access.
    """
    start = sub.current_period_start
    mine = [
        p
        for p in payments
        if p.stripe_subscription_id == sub.stripe_subscription_id and (start is None or p.paid_at >= start)
    ]
    if not mine:
        return None
    latest = max(mine, key=lambda p: (p.paid_at, p.stripe_charge_id))
    why = latest.voided
    return f"its payment {latest.stripe_charge_id} was {why}" if why else None


def _pause_why(sub: SubscriptionFact) -> str:
    resumes = sub.pause_collection_resumes_at
    when = f"until {at(resumes)}" if resumes else "until resumed"
    return f"its collection is paused ({sub.pause_collection_behavior}) {when}: no access while paused"


def _grace_start(sub: SubscriptionFact) -> dt.datetime | None:
    return sub.payment_failed_at or sub.current_period_start or sub.current_period_end


def _later(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    """Whether ``a`` ends later than ``b`` (None = open-ended, the latest of all)."""
    if a is None:
        return b is not None
    return b is not None and a > b


def _comp_rule(state: ReaderState, now: dt.datetime) -> tuple[Step, dt.datetime | None, bool]:
    comp = state.comp
    if comp is None:
        return Step("comp", False, "no comp"), None, False
    if now < comp.until:
        return Step("comp", True, f"comp until {at(comp.until)}"), comp.until, True
    return Step("comp", False, f"comp expired at {at(comp.until)}"), None, False


def _paid_rule(
    sub: SubscriptionFact, state: ReaderState, now: dt.datetime, leeway: dt.timedelta
) -> tuple[Step, Grant | None]:
    """An active or trialing subscription: its step, and what it grants (None: nothing)."""
    sid = sub.stripe_subscription_id
    reason = "subscription" if sub.status == "active" else "trial"
    end = sub.current_period_end
    if reason == "trial":
        end = sub.trial_end or sub.current_period_end
    voided = _subscription_payment_voided(sub, state.payments)
    if voided:
        return Step(reason, False, f"{sid} is {sub.status} but {voided}"), None
    if end is None:
        return Step(reason, True, f"{sid} is {sub.status} with no end date"), (reason, None)
    if sub.cancel_at_period_end:
        if now >= end:
            return Step(reason, False, f"{sid} was set to cancel and ended at {at(end)}"), None
        return Step(reason, True, f"{sid} is {sub.status}, set to cancel at {at(end)}"), (reason, end)
    if now >= end + leeway:
        return Step(reason, False, f"{sid} is {sub.status} but its period ended at {at(end)}"), None
    # The site is told the period end; past it, the end of the leeway (when access would really
    # stop if the renewal never arrives).
    until = end if now < end else end + leeway
    note = "" if now < end else f" (renewal pending since {at(end)})"
    return Step(reason, True, f"{sid} is {sub.status} until {at(until)}{note}"), (reason, until)


def _grace_rule(
    sub: SubscriptionFact, state: ReaderState, now: dt.datetime, grace_days: dt.timedelta
) -> tuple[Step, Grant | None]:
    """A past_due or unpaid subscription: its step, and the grace period it grants (None: none)."""
    sid = sub.stripe_subscription_id
    start = _grace_start(sub)
    if start is None:
        return Step("grace_period", False, f"{sid} is {sub.status} with no failure date"), None
    voided = _subscription_payment_voided(sub, state.payments)
    if voided:
        return Step("grace_period", False, f"{sid} is {sub.status} but {voided}"), None
    end = start + grace_days
    if now < end:
        return (
            Step("grace_period", True, f"{sid} is {sub.status}; payment failed {at(start)}"),
            ("grace_period", end),
        )
    return Step("grace_period", False, f"{sid} is {sub.status}; grace ended {at(end)}"), None


def _subscription_step(
    sub: SubscriptionFact, state: ReaderState, now: dt.datetime, settings: AccessSettings
) -> tuple[Step, Grant | None]:
    """One subscription's step and grant, by its status."""
    sid = sub.stripe_subscription_id
    if sub.status in ("active", "trialing", *GRACE_STATUSES) and sub.collection_paused(now):
        rule = {"active": "subscription", "trialing": "trial"}.get(sub.status, "grace_period")
        return Step(rule, False, f"{sid} is {sub.status} but {_pause_why(sub)}"), None
    if sub.status in ("active", "trialing"):
        return _paid_rule(sub, state, now, dt.timedelta(hours=settings.renewal_leeway_hours))
    if sub.status in GRACE_STATUSES:
        return _grace_rule(sub, state, now, dt.timedelta(days=settings.grace_period_days))
    if sub.status == "paused":
        return Step("subscription", False, f"{sid} is paused: no access while paused"), None
    ended = f", ended {at(sub.ended_at)}" if sub.ended_at else ""
    return Step("subscription", False, f"{sid} is {sub.status}{ended}"), None


def _subscription_rules(
    state: ReaderState, now: dt.datetime, settings: AccessSettings
) -> tuple[list[Step], Grant | None, Grant | None]:
    """Steps, the best subscription/trial grant, and the best grace grant."""
    subs = [s for s in state.subscriptions if s.kind == "subscription"]
    if not subs:
        return [Step("subscription", False, "no subscription")], None, None
    steps: list[Step] = []
    best: Grant | None = None
    grace: Grant | None = None
    for sub in subs:
        step, grant = _subscription_step(sub, state, now, settings)
        steps.append(step)
        if grant is None:
            continue
        if grant[0] == "grace_period":
            if grace is None or _later(grant[1], grace[1]):
                grace = grant
        elif best is None or (best[0] == "trial" and grant[0] == "subscription") or _later(grant[1], best[1]):
            best = grant
    return steps, best, grace


def _donation_rule(
    state: ReaderState, now: dt.datetime, settings: AccessSettings
) -> tuple[Step, dt.datetime | None, bool]:
    if settings.donation_access_days == 0:
        return Step("donation", False, "donor access is off (donation_access_days = 0)"), None, False
    window = dt.timedelta(days=settings.donation_access_days)
    donations = [p for p in state.payments if p.kind == "donation"]
    if not donations:
        return Step("donation", False, "no donation"), None, False
    voided = []
    best: PaymentFact | None = None
    for p in donations:
        why = p.voided
        if why:
            voided.append(f"{p.stripe_charge_id} was {why}")
        elif now < p.paid_at + window and (best is None or p.paid_at > best.paid_at):
            best = p
    if best is not None:
        until = best.paid_at + window
        return Step("donation", True, f"donation {best.stripe_charge_id} until {at(until)}"), until, True
    extra = f" ({'; '.join(voided)})" if voided else ""
    return (
        Step("donation", False, f"no donation in the last {settings.donation_access_days} days{extra}"),
        None,
        False,
    )


def _appeal(
    state: ReaderState, now: dt.datetime, settings: AccessSettings, supporter: str | None
) -> tuple[bool, Step]:
    if supporter:
        return False, Step("appeal", False, f"hidden: {supporter} access")
    for sub in state.subscriptions:
        if sub.kind == "donation" and sub.status in DONOR_STATUSES and not sub.collection_paused(now):
            return False, Step("appeal", False, f"hidden: recurring donation {sub.stripe_subscription_id}")
    pause = dt.timedelta(days=settings.appeal_pause_days)
    for p in state.payments:
        if p.kind == "donation" and p.voided is None and now < p.paid_at + pause:
            return False, Step(
                "appeal",
                False,
                f"hidden: donation {p.stripe_charge_id} paused asks until {at(p.paid_at + pause)}",
            )
    if state.dismissed_at is not None:
        end = state.dismissed_at + dt.timedelta(days=settings.dismiss_days)
        if dismissal_active(state.dismissed_at, now, settings):
            return False, Step("appeal", False, f"hidden: dismissed until {at(end)}")
        return True, Step("appeal", True, f"shown: dismissal expired at {at(end)}")
    return True, Step("appeal", True, "shown: not a supporter")


def _entitlement(
    state: ReaderState, now: dt.datetime, settings: AccessSettings
) -> tuple[list[Step], Grant | None, str | None]:
    """The entitlement steps, the grant (first match wins), and the supporter kind for the appeal."""
    if state.anonymous:
        # Nothing was loaded for it, and nothing may be: a browser can claim any id.
        return [Step("entitlements", False, "an anonymous browser has none (not signed in)")], None, None
    comp_step, comp_until, comp_ok = _comp_rule(state, now)
    sub_steps, sub_grant, grace_grant = _subscription_rules(state, now, settings)
    donation_step, donation_until, donation_ok = _donation_rule(state, now, settings)
    grant: Grant | None = None
    if comp_ok:
        grant = ("comp", comp_until)
    elif sub_grant is not None:
        grant = sub_grant
    elif grace_grant is not None:
        grant = grace_grant
    elif donation_ok:
        grant = ("donation", donation_until)
    # The appeal rule weighs donations itself (a lapsed donor may be asked again).
    supporter = grant[0] if grant is not None and grant[0] != "donation" else None
    return [comp_step, *sub_steps, donation_step], grant, supporter


def decide(
    state: ReaderState, now: dt.datetime, settings: AccessSettings, level: str = DEFAULT_LEVEL
) -> Decision:
    """May this reader read this article, of this level, now? Pure: depends only on the arguments.

    ``level`` is one of LEVELS (the caller validated it; another raises ValueError).
    """
    level_step = levels.level_step(state, level, settings)
    steps, grant, supporter = _entitlement(state, now, settings)
    appeal, appeal_step = _appeal(state, now, settings, supporter)
    return levels.apply_level(state, now, settings, level, grant, [level_step, *steps], appeal, appeal_step)
