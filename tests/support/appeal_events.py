"""What POST /support/events does with one batch (contract 2), for tests that need measured appeals.

The measurement piece (A) owns the real route and its recording function; until that is merged,
this helper records a batch the way the contract says, and the lead can swap its body for a call
to A's function (same arguments: the settings, the batch's events and the time it arrived).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.experiments.asks import InvalidAsk, decode_ask, subject_hash
from paywall.models.appeals import ACTIONS, EVENT_TYPES, AppealAsk, AppealEvent


def record_events(
    session: Session, settings: Settings, events: list[dict[str, Any]], now: dt.datetime
) -> tuple[int, int]:
    """Record ``[{"ask", "type", "action"?}, ...]`` as arrived at ``now``: (recorded, dropped).

    An event with a bad or expired ask, an unknown type or action, or a preview ask is dropped;
    each recorded footer impression also spends one ask of the subject's budget (``appeal_asks``)."""
    rows: list[dict[str, Any]] = []
    asks: list[dict[str, Any]] = []
    dropped = 0
    hashes: dict[str, str] = {}
    for event in events:
        try:
            ask = decode_ask(settings, event.get("ask"), now)
        except InvalidAsk:
            dropped += 1
            continue
        type_, action = event.get("type"), event.get("action", "") if event.get("type") == "click" else ""
        if ask.preview or type_ not in EVENT_TYPES or (action and action not in ACTIONS):
            dropped += 1
            continue
        if ask.subject not in hashes:
            hashes[ask.subject] = subject_hash(settings, ask.subject)
        rows.append(
            {
                "at": now,
                "type": type_,
                "channel": ask.channel,
                "experiment": ask.experiment,
                "variant": ask.variant,
                "action": action,
                "subject": hashes[ask.subject],
            }
        )
        if type_ == "impression" and ask.channel == "footer":
            asks.append({"subject": ask.subject, "asked_at": now, "channel": "footer"})
    if rows:
        session.execute(insert(AppealEvent), rows)
    if asks:
        session.execute(insert(AppealAsk), asks)
    return len(rows), dropped
