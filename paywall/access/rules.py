"""The access rules: ``decide(state, now, settings)``, a pure function of what we know about a reader.

First match wins: comp, subscription / trial, grace period, donation, metered. The appeal flag is
worked out beside the rules from the whole state (a comped subscriber is still a subscriber). Every
rule adds a line to the trace, saying why it did or did not apply, so an operator can answer "why was
I paywalled?" from the answer alone.

Rules in detail (the README's "Access API" section says the same for site owners):

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
  ``meter_timezone``; an article already read this month is free again. Past the allowance:
  denied, ``meter_exhausted``.

Appeal: false when the reader has comp, subscription, trial or grace access (a subscriber whose card
failed should be asked to fix the card, not to subscribe), an active recurring donation, a valid
donation less than ``appeal_pause_days`` old, or dismissed the appeal less than ``dismiss_days`` ago.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from paywall.access.settings import AccessSettings
from paywall.clock import isoformat

ALLOWED_REASONS = ("comp", "subscription", "trial", "grace_period", "donation", "metered")
DENIED_REASONS = ("meter_exhausted",)
GRACE_STATUSES = ("past_due", "unpaid")
# A recurring donation in one of these states is a current donor (appeal paused).
DONOR_STATUSES = ("active", "trialing", "past_due")


@dataclass(frozen=True)
class CompFact:
    until: dt.datetime
    note: str | None = None


@dataclass(frozen=True)
class SubscriptionFact:
    stripe_subscription_id: str
    status: str
    kind: str = "subscription"
    current_period_start: dt.datetime | None = None
    current_period_end: dt.datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: dt.datetime | None = None
    payment_failed_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    # Stripe's pause_collection: behavior (None: collection not paused) and resumes_at.
    pause_collection_behavior: str | None = None
    pause_collection_resumes_at: dt.datetime | None = None

    def collection_paused(self, now: dt.datetime) -> bool:
        """Whether Stripe's collection is paused at ``now`` (a pause is over at ``resumes_at``)."""
        if self.pause_collection_behavior is None:
            return False
        resumes = self.pause_collection_resumes_at
        return resumes is None or now < resumes


@dataclass(frozen=True)
class PaymentFact:
    stripe_charge_id: str
    kind: str
    amount_minor: int
    paid_at: dt.datetime
    refunded_minor: int = 0
    dispute_status: str | None = None
    disputed_minor: int = 0
    stripe_subscription_id: str | None = None

    @property
    def voided(self) -> str | None:
        """Why this payment grants nothing (refunded in full, lost dispute), or None if it stands."""
        if self.amount_minor > 0 and self.refunded_minor >= self.amount_minor:
            return "refunded"
        if self.dispute_status == "lost" or self.disputed_minor > 0:
            return "lost in a dispute"
        return None


@dataclass(frozen=True)
class ReaderState:
    """Everything the rules need about one reader id, loaded in one read (see state.py)."""

    reader: str
    article: str | None = None
    comp: CompFact | None = None
    subscriptions: tuple[SubscriptionFact, ...] = ()
    payments: tuple[PaymentFact, ...] = ()
    dismissed_at: dt.datetime | None = None
    # Articles this reader id has already used the allowance on in the current meter period.
    meter_articles: frozenset[str] = frozenset()
    # The highest meter slot taken in the period (0: none); the next free read claims this + 1.
    meter_slot: int = 0


@dataclass(frozen=True)
class Meter:
    used: int
    limit: int
    resets_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {"used": self.used, "limit": self.limit, "resets_at": isoformat(self.resets_at)}


@dataclass(frozen=True)
class Step:
    """One line of the trace: a rule, whether it applied, and why."""

    rule: str
    applies: bool
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "applies": self.applies, "why": self.why}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    until: dt.datetime | None
    meter: Meter | None
    appeal: bool
    trace: tuple[Step, ...] = field(default=())
    # True when this answer spends the allowance on a new article (the caller records the read).
    records_read: bool = False


def meter_period(now: dt.datetime, settings: AccessSettings) -> tuple[str, dt.datetime]:
    """The meter period of ``now`` (``YYYY-MM`` in meter_timezone) and when the next one starts (UTC)."""
    local = now.astimezone(settings.tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    resets = dt.datetime(year, month, 1, tzinfo=settings.tz).astimezone(dt.UTC)
    return f"{local.year:04d}-{local.month:02d}", resets


def dismissal_active(dismissed_at: dt.datetime | None, now: dt.datetime, settings: AccessSettings) -> bool:
    """Whether a dismissal made at ``dismissed_at`` still hides the appeal at ``now``."""
    if dismissed_at is None:
        return False
    return now < dismissed_at + dt.timedelta(days=settings.dismiss_days)


def _at(value: dt.datetime | None) -> str:
    return isoformat(value) or "never"


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
    when = f"until {_at(resumes)}" if resumes else "until resumed"
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
        return Step("comp", True, f"comp until {_at(comp.until)}"), comp.until, True
    return Step("comp", False, f"comp expired at {_at(comp.until)}"), None, False


def _subscription_rules(
    state: ReaderState, now: dt.datetime, settings: AccessSettings
) -> tuple[list[Step], tuple[str, dt.datetime | None] | None, tuple[str, dt.datetime | None] | None]:
    """Steps, the best subscription/trial grant, and the best grace grant."""
    steps: list[Step] = []
    best: tuple[str, dt.datetime | None] | None = None
    grace: tuple[str, dt.datetime | None] | None = None
    leeway = dt.timedelta(hours=settings.renewal_leeway_hours)
    grace_days = dt.timedelta(days=settings.grace_period_days)
    subs = [s for s in state.subscriptions if s.kind == "subscription"]
    if not subs:
        steps.append(Step("subscription", False, "no subscription"))
    for sub in subs:
        sid = sub.stripe_subscription_id
        if sub.status in ("active", "trialing", *GRACE_STATUSES) and sub.collection_paused(now):
            rule = {"active": "subscription", "trialing": "trial"}.get(sub.status, "grace_period")
            steps.append(Step(rule, False, f"{sid} is {sub.status} but {_pause_why(sub)}"))
            continue
        if sub.status in ("active", "trialing"):
            reason = "subscription" if sub.status == "active" else "trial"
            end = sub.current_period_end
            if reason == "trial":
                end = sub.trial_end or sub.current_period_end
            voided = _subscription_payment_voided(sub, state.payments)
            if voided:
                steps.append(Step(reason, False, f"{sid} is {sub.status} but {voided}"))
                continue
            if end is None:
                steps.append(Step(reason, True, f"{sid} is {sub.status} with no end date"))
                until: dt.datetime | None = None
            elif sub.cancel_at_period_end:
                if now >= end:
                    steps.append(Step(reason, False, f"{sid} was set to cancel and ended at {_at(end)}"))
                    continue
                until = end
                steps.append(Step(reason, True, f"{sid} is {sub.status}, set to cancel at {_at(end)}"))
            else:
                # The site is told the period end; past it, the end of the leeway (when access
                # would really stop if the renewal never arrives).
                until = end if now < end else end + leeway
                if now >= end + leeway:
                    steps.append(
                        Step(reason, False, f"{sid} is {sub.status} but its period ended at {_at(end)}")
                    )
                    continue
                note = "" if now < end else f" (renewal pending since {_at(end)})"
                steps.append(Step(reason, True, f"{sid} is {sub.status} until {_at(until)}{note}"))
            if best is None or (best[0] == "trial" and reason == "subscription") or _later(until, best[1]):
                best = (reason, until)
        elif sub.status in GRACE_STATUSES:
            start = _grace_start(sub)
            if start is None:
                steps.append(Step("grace_period", False, f"{sid} is {sub.status} with no failure date"))
                continue
            voided = _subscription_payment_voided(sub, state.payments)
            if voided:
                steps.append(Step("grace_period", False, f"{sid} is {sub.status} but {voided}"))
                continue
            end = start + grace_days
            if now < end:
                steps.append(
                    Step("grace_period", True, f"{sid} is {sub.status}; payment failed {_at(start)}")
                )
                if grace is None or _later(end, grace[1]):
                    grace = ("grace_period", end)
            else:
                steps.append(Step("grace_period", False, f"{sid} is {sub.status}; grace ended {_at(end)}"))
        elif sub.status == "paused":
            steps.append(Step("subscription", False, f"{sid} is paused: no access while paused"))
        else:
            ended = f", ended {_at(sub.ended_at)}" if sub.ended_at else ""
            steps.append(Step("subscription", False, f"{sid} is {sub.status}{ended}"))
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
        return Step("donation", True, f"donation {best.stripe_charge_id} until {_at(until)}"), until, True
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
                f"hidden: donation {p.stripe_charge_id} paused asks until {_at(p.paid_at + pause)}",
            )
    if state.dismissed_at is not None:
        end = state.dismissed_at + dt.timedelta(days=settings.dismiss_days)
        if dismissal_active(state.dismissed_at, now, settings):
            return False, Step("appeal", False, f"hidden: dismissed until {_at(end)}")
        return True, Step("appeal", True, f"shown: dismissal expired at {_at(end)}")
    return True, Step("appeal", True, "shown: not a supporter")


def decide(state: ReaderState, now: dt.datetime, settings: AccessSettings) -> Decision:
    """May this reader read this article now? Pure: the answer depends only on the arguments."""
    steps: list[Step] = []

    comp_step, comp_until, comp_ok = _comp_rule(state, now)
    steps.append(comp_step)
    sub_steps, sub_grant, grace_grant = _subscription_rules(state, now, settings)
    steps.extend(sub_steps)
    donation_step, donation_until, donation_ok = _donation_rule(state, now, settings)
    steps.append(donation_step)

    grant: tuple[str, dt.datetime | None] | None = None
    if comp_ok:
        grant = ("comp", comp_until)
    elif sub_grant is not None:
        grant = sub_grant
    elif grace_grant is not None:
        grant = grace_grant
    elif donation_ok:
        grant = ("donation", donation_until)

    supporter = None
    if comp_ok:
        supporter = "comp"
    elif sub_grant is not None:
        supporter = sub_grant[0]
    elif grace_grant is not None:
        supporter = "grace_period"
    appeal, appeal_step = _appeal(state, now, settings, supporter)

    if grant is not None:
        steps.append(Step("metered", False, f"not needed: {grant[0]} access"))
        steps.append(appeal_step)
        return Decision(True, grant[0], grant[1], None, appeal, tuple(steps))

    period, resets = meter_period(now, settings)
    limit = settings.free_articles_per_month
    used = len(state.meter_articles)
    article = state.article
    if article is not None and article in state.meter_articles:
        meter = Meter(used, limit, resets)
        steps.append(Step("metered", True, f"{article!r} was already read in {period}: free again"))
        steps.append(appeal_step)
        return Decision(True, "metered", None, meter, appeal, tuple(steps))
    if used < limit:
        new = article is not None
        meter = Meter(used + 1 if new else used, limit, resets)
        what = f"article {meter.used} of {limit}" if new else f"{used} of {limit} used, none counted"
        steps.append(Step("metered", True, f"{what} in {period}"))
        steps.append(appeal_step)
        return Decision(True, "metered", None, meter, appeal, tuple(steps), records_read=new)
    steps.append(Step("metered", False, f"all {limit} free articles of {period} used"))
    steps.append(appeal_step)
    return Decision(False, "meter_exhausted", None, Meter(used, limit, resets), appeal, tuple(steps))
