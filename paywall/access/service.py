"""The access check behind ``POST /v1/access``, the token route and the widget.

``peek`` loads the state (one query) and calls ``decide``; when the answer spends a free article,
``spend`` records it race-safely. ``evaluate`` is the two together (``POST /v1/access``; the token
route asks it to write nothing); the widget's route calls the two itself for a reader, and
``evaluate_anonymous`` for an anonymous browser (client mode): its meter only. ``check_access`` is
``evaluate`` with the answer's body. Every decision is ``decide`` followed by the ask budget and
the footer experiment (paywall/access/asking.py).
None of them calls Stripe or creates a reader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from paywall.access import meter
from paywall.access.asking import apply_asks
from paywall.access.rules import DEFAULT_LEVEL, Decision, ReaderState, decide, meter_period
from paywall.access.settings import AccessSettings, access_settings
from paywall.access.state import load_anonymous_state, load_state
from paywall.clock import isoformat
from paywall.config import Settings
from paywall.experiments.assignment import assignment_for
from paywall.widget.settings import appeal_settings


def _asks_since(settings: Settings, now: dt.datetime) -> dt.datetime | None:
    """Where the ask budget's window starts (None: no budget, so the state query counts no asks)."""
    appeal = appeal_settings(settings)
    return now - dt.timedelta(days=appeal.per_days) if appeal.max_asks > 0 else None


def _decide(
    settings: Settings, state: ReaderState, now: dt.datetime, cfg: AccessSettings, level: str
) -> Decision:
    """The rules, then the ask budget and the footer experiment (paywall/access/asking.py)."""
    decision = decide(state, now, cfg, level)
    if not decision.appeal:
        return decision
    assignment = assignment_for(settings, "footer", state.reader, now)
    return apply_asks(decision, state, appeal_settings(settings), assignment)


def peek(
    conn: Session | Connection,
    settings: Settings,
    reader: str,
    article: str | None,
    now: dt.datetime,
    *,
    level: str = DEFAULT_LEVEL,
) -> tuple[ReaderState, Decision]:
    """The reader's state and decision at ``level``, from one query; writes nothing.

    ``decision.records_read`` says whether the answer spends a free article (then call ``spend``).
    """
    cfg = access_settings(settings)
    period, _ = meter_period(now, cfg)
    state = load_state(conn, reader, article, now, cfg, period, _asks_since(settings, now))
    return state, _decide(settings, state, now, cfg, level)


def peek_anonymous(
    conn: Session | Connection,
    settings: Settings,
    browser_id: str,
    article: str | None,
    now: dt.datetime,
    *,
    level: str = DEFAULT_LEVEL,
) -> tuple[ReaderState, Decision]:
    """``peek`` for an anonymous browser id (valid_browser_id): its meter and dismissal only."""
    cfg = access_settings(settings)
    period, _ = meter_period(now, cfg)
    state = load_anonymous_state(conn, browser_id, article, period, _asks_since(settings, now))
    return state, _decide(settings, state, now, cfg, level)


def spend(
    conn: Session | Connection, settings: Settings, state: ReaderState, decision: Decision, now: dt.datetime
) -> Decision:
    """Spend a free article on ``state.article``, race-safely; returns the final decision.

    ``decision`` is the one ``peek`` made from ``state`` (not made again here). Claims the next
    meter slot (see paywall/access/meter.py). When a concurrent read took it, the meter is read
    again and the rules decide again: the article may now be a re-read, the meter exhausted, or
    another slot free. Needs no transaction: every statement stands on its own, and
    a retry after a lost connection is safe (a claimed article reads back as a re-read).
    """
    cfg = access_settings(settings)
    period, _ = meter_period(now, cfg)
    while decision.records_read and state.article is not None:
        if meter.claim(conn, state.reader, period, state.article, state.meter_slot + 1, now):
            break
        # Lost a race: another read spent a slot (or counted this article) since the state was
        # read. Every loss means one more read counted, so the meter runs out within the allowance.
        articles, slot = meter.read_meter(conn, state.reader, period)
        state = dataclasses.replace(state, meter_articles=articles, meter_slot=slot)
        decision = _decide(settings, state, now, cfg, decision.level)
    return decision


def evaluate(
    conn: Session | Connection,
    settings: Settings,
    reader: str,
    article: str | None,
    now: dt.datetime,
    *,
    record: bool = True,
    level: str = DEFAULT_LEVEL,
) -> Decision:
    """The decision for ``reader`` reading ``article`` (None: do not meter) at ``level``.

    With ``record`` a newly metered article is written (see ``spend``). Without it nothing is written.
    """
    state, decision = peek(conn, settings, reader, article, now, level=level)
    if record and decision.records_read:
        decision = spend(conn, settings, state, decision, now)
    return decision


def evaluate_anonymous(
    conn: Session | Connection,
    settings: Settings,
    browser_id: str,
    article: str | None,
    now: dt.datetime,
    *,
    record: bool = True,
    level: str = DEFAULT_LEVEL,
) -> Decision:
    """``evaluate`` for an anonymous browser: never an entitlement; its reads go under its own key."""
    state, decision = peek_anonymous(conn, settings, browser_id, article, now, level=level)
    if record and decision.records_read:
        decision = spend(conn, settings, state, decision, now)
    return decision


def answer_body(
    reader: str | None, article: str | None, decision: Decision, *, explain: bool = False
) -> dict[str, Any]:
    """The JSON answer of ``POST /v1/access`` for a decision (``reader`` None: an anonymous browser)."""
    body: dict[str, Any] = {
        "reader": reader,
        "article": article,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "until": isoformat(decision.until),
        "meter": decision.meter.as_dict() if decision.meter else None,
        "appeal": decision.appeal,
        "level": decision.level,
        "register": decision.register,
    }
    if explain:
        body["trace"] = [step.as_dict() for step in decision.trace]
    return body


def check_access(
    session: Session,
    settings: Settings,
    reader: str,
    article: str | None,
    now: dt.datetime,
    *,
    explain: bool = False,
    level: str = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """The same answer as ``POST /v1/access`` (without its token); ``article`` None checks without metering."""
    decision = evaluate(session, settings, reader, article, now, record=True, level=level)
    return answer_body(reader, article, decision, explain=explain)
