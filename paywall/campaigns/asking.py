"""An appeal mail is an ask: the ask budget, ``min_articles`` and the experiment on a campaign.

Before a run claims anyone, ``plan_asks`` reads, in two queries, every candidate's asks in the
budget window (``appeal_asks``: footer appeals seen and appeal mails sent) and articles read this
meter month; the run then skips, each under its own tally word:

- ``over_budget``: the reader's asks in the last ``[appeal] per_days`` days reach ``max_asks``;
- ``too_new``: fewer than ``[appeal] min_articles`` articles read this month;
- ``holdback``: the campaign is a channel of an experiment running now, and the reader is in its
  holdback. The reader is recorded in the send-once ledger as ``holdback`` (so a rerun neither
  mails them nor counts them again) with one ``view`` event: the denominator their lift is
  measured against.

Every other recipient is mailed their arm's copy (``headline``, ``text``, ``subscribe_label``,
``donate_label`` in the templates; "" where the variant keeps the campaign's own words), and their
personal links carry an ask (claim ``ask``) for Checkout's attribution. A message that went out
(``sent``, or ``unknown``: the body reached the server) records one ``AppealAsk`` (none when
``max_asks`` is 0: no budget reads it) and the events
``view`` and ``impression`` with the outcome, in the transaction that marks the ledger row, so a
message is counted at most once, like it is sent at most once.

The budget is read when the run starts: a footer appeal seen while a long run is sending can take
a reader one ask over the budget, never more (each campaign mails a reader once).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from paywall.access.facts import meter_period
from paywall.access.settings import access_settings
from paywall.campaigns.selection import Candidate
from paywall.config import Settings
from paywall.experiments.asks import subject_hash
from paywall.experiments.assignment import assign, running
from paywall.experiments.definition import HOLDBACK, Experiment
from paywall.models import AppealAsk, AppealEvent, MeterRead
from paywall.widget.settings import appeal_settings

# The copy a mail variant may change (the templates' variables; region_label is the widget's).
MAIL_COPY = ("headline", "text", "subscribe_label", "donate_label")
# Ledger states whose message may have reached the reader: they spend the budget and are counted.
ASKED_STATES = ("sent", "unknown")
_CHUNK = 500


@dataclass(frozen=True)
class Arm:
    """The experiment (None: none runs on the campaign) and arm one reader is mailed in."""

    experiment: Experiment | None
    variant: str = ""

    @property
    def name(self) -> str:
        return self.experiment.name if self.experiment is not None else ""

    @property
    def holdback(self) -> bool:
        return self.variant == HOLDBACK

    def copy(self) -> dict[str, str]:
        """The template variables of the arm's copy ("" where the campaign's own words stay)."""
        found = self.experiment.variant(self.variant) if self.experiment is not None else None
        words = found.copy if found is not None else {}
        return {key: words.get(key, "") for key in MAIL_COPY}


@dataclass(frozen=True)
class Asked:
    """What a message that went out records: one ask for the budget and its view/impression."""

    subject: str
    subject_hash: str
    channel: str
    experiment: str
    variant: str
    # Whether the ask spends a budget (``max_asks`` > 0): with no budget no ``AppealAsk`` is kept,
    # since nothing would ever read it.
    budget: bool = True


@dataclass
class AskPlan:
    """The campaign's budget, minimum and experiment, with the counts read for its candidates."""

    settings: Settings
    campaign: str
    max_asks: int
    min_articles: int
    experiment: Experiment | None
    asks: dict[str, int] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)

    def skip(self, cand: Candidate) -> str | None:
        """``over_budget`` or ``too_new`` for a reader not to ask now, else None."""
        if self.max_asks > 0 and self.asks.get(cand.external_id, 0) >= self.max_asks:
            return "over_budget"
        if self.min_articles > 0 and self.reads.get(cand.external_id, 0) < self.min_articles:
            return "too_new"
        return None

    def arm(self, cand: Candidate) -> Arm:
        if self.experiment is None:
            return Arm(None)
        return Arm(self.experiment, assign(self.experiment, cand.external_id).variant)

    def asked(self, cand: Candidate, arm: Arm) -> Asked:
        subject = cand.external_id
        hashed = subject_hash(self.settings, subject)
        return Asked(subject, hashed, self.campaign, arm.name, arm.variant, budget=self.max_asks > 0)


def _counts(
    session: Session, column: InstrumentedAttribute[str], where: list[Any], keys: list[str]
) -> dict[str, int]:
    """Rows per key of ``column`` (among ``keys``, in chunks) matching ``where``."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = session.execute(select(column, func.count()).where(column.in_(chunk), *where).group_by(column))
        found.update({key: int(count) for key, count in rows})
    return found


def plan_asks(
    session: Session, settings: Settings, campaign: str, people: Iterable[Candidate], now: dt.datetime
) -> AskPlan:
    """The budget, minimum and experiment for a run of ``campaign``, read for ``people``."""
    conf = appeal_settings(settings)
    plan = AskPlan(settings, campaign, conf.max_asks, conf.min_articles, running(settings, campaign, now))
    keys = [c.external_id for c in people if c.excluded is None]
    if plan.max_asks > 0:
        since = now - dt.timedelta(days=conf.per_days)
        plan.asks = _counts(session, AppealAsk.subject, [AppealAsk.asked_at >= since], keys)
    if plan.min_articles > 0:
        period, _ = meter_period(now, access_settings(settings))
        plan.reads = _counts(session, MeterRead.reader, [MeterRead.period == period], keys)
    return plan


def record_asked(session: Session, asked: Asked, now: dt.datetime) -> None:
    """One ask for the budget (when there is a budget) and the view and impression of a message
    that went out."""
    if asked.budget:
        session.add(AppealAsk(subject=asked.subject, asked_at=now, channel=asked.channel))
    for kind in ("view", "impression"):
        session.add(_event(asked, kind, now))


def record_holdback(session: Session, asked: Asked, now: dt.datetime) -> None:
    """The ``view`` of a holdback reader who is not mailed (the denominator of the lift)."""
    session.add(_event(asked, "view", now))


def _event(asked: Asked, kind: str, now: dt.datetime) -> AppealEvent:
    # The "ask" of a mail is the (campaign, reader) pair the ledger sends at most once.
    digest = hashlib.sha256(f"{asked.channel}\x00{asked.subject_hash}".encode()).digest()
    return AppealEvent(
        ask="m" + base64.urlsafe_b64encode(digest).decode()[:21],
        at=now,
        type=kind,
        channel=asked.channel,
        experiment=asked.experiment,
        variant=asked.variant,
        action="",
        subject=asked.subject_hash,
    )
