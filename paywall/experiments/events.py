"""Recording what the widget saw: a beacon's events in ``appeal_events``, footer impressions in
``appeal_asks`` (they spend the ask budget).

A beacon is ``{"events": [{"ask", "type", "action"?}, ...]}`` (at most ``MAX_EVENTS``). The shape is
checked strictly (a malformed beacon is a client bug: ``InvalidBeacon`` names the field); an event
whose ask is forged, expired, a staff preview's or not a page channel's is dropped and counted,
never an error (an ask outlives a page left open over night, and the widget cannot tell).

This runs beside the access check, thousands of events a second, so it is lean on purpose: one
HMAC per distinct ask in the beacon, no ORM, and the whole beacon written at once. On PostgreSQL
that is ONE statement (a CTE inserting the events and the spent asks from arrays), run on the
autocommit connections of the access check (``Database.run_idempotent``): one round trip, no
pre-ping, no BEGIN/COMMIT, atomic all the same; measured, it cost a third of the transaction of
two executemany INSERTs it replaced (bench/appeal_events.py, docs/experiments-measure.md). Those
connections do not wait for the WAL flush (``synchronous_commit = off``): a database crash may lose
the last few milliseconds of appeal events, which moves a count by a handful and harms no one (no
money and no access depends on one). On SQLite: one Core executemany INSERT per table in one
short transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert

from paywall.config import Settings
from paywall.db import Database, DriverStatement
from paywall.experiments.asks import Ask, InvalidAsk, decode_ask, subject_hash
from paywall.experiments.definition import PAGE_CHANNELS
from paywall.models.appeals import ACTIONS, EVENT_TYPES, AppealAsk, AppealEvent

# Events per beacon: the widget flushes about a second after the last one, so a page sends a few.
MAX_EVENTS = 50
# Types reported at most once per ask: a repeat in one beacon is the same sighting.
ONCE_PER_ASK = ("view", "impression")

# Core statements on the tables (not the ORM classes): executemany with no ORM bookkeeping.
_EVENTS = insert(cast(Table, AppealEvent.__table__))
_ASKS = insert(cast(Table, AppealAsk.__table__))


class InvalidBeacon(Exception):
    """A beacon that is not ``{"events": [...]}`` as documented; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Reported:
    """One event as the widget sent it (shape checked, ask not yet)."""

    ask: str
    type: str
    action: str


@dataclass(frozen=True)
class Outcome:
    """What ``record`` did: events written, and events dropped (bad, expired or preview asks)."""

    recorded: int
    dropped: int


def parse_beacon(body: Any) -> list[Reported]:
    """The events of a decoded JSON beacon; raises InvalidBeacon naming the first bad field."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise InvalidBeacon("events", 'Send {"events": [...]}.')
    items = body["events"]
    if len(items) > MAX_EVENTS:
        raise InvalidBeacon("events", f"At most {MAX_EVENTS} events per request.")
    found = []
    for i, item in enumerate(items):
        where = f"events.{i}"
        if not isinstance(item, dict):
            raise InvalidBeacon(where, "Each event is an object.")
        ask, type_, action = item.get("ask"), item.get("type"), item.get("action", "")
        if not isinstance(ask, str) or not ask:
            raise InvalidBeacon(f"{where}.ask", "The ask from the appeal answer is required.")
        if type_ not in EVENT_TYPES:
            raise InvalidBeacon(f"{where}.type", f"Must be one of: {', '.join(EVENT_TYPES)}.")
        if type_ == "click":
            if action not in ACTIONS:
                raise InvalidBeacon(f"{where}.action", f"A click's action is one of: {', '.join(ACTIONS)}.")
        elif action not in ("", None):
            raise InvalidBeacon(f"{where}.action", "Only a click has an action.")
        found.append(Reported(ask, type_, action or ""))
    return found


def _decoded(settings: Settings, token: str, now: dt.datetime, cache: dict[str, Ask | None]) -> Ask | None:
    """The ask, or None when it must not be counted (invalid, expired, preview, not a page's)."""
    if token not in cache:
        try:
            ask: Ask | None = decode_ask(settings, token, now)
        except InvalidAsk:
            ask = None
        if ask is not None and (ask.preview or ask.channel not in PAGE_CHANNELS):
            ask = None
        cache[token] = ask
    return cache[token]


def event_rows(
    settings: Settings, reported: list[Reported], now: dt.datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(appeal_events rows, appeal_asks rows, events dropped) for a beacon; no database."""
    asks: dict[str, Ask | None] = {}
    hashes: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    events: list[dict[str, Any]] = []
    spent: list[dict[str, Any]] = []
    dropped = 0
    for item in reported:
        ask = _decoded(settings, item.ask, now, asks)
        if ask is None:
            dropped += 1
            continue
        if item.type in ONCE_PER_ASK:
            if (item.ask, item.type) in seen:
                dropped += 1
                continue
            seen.add((item.ask, item.type))
        subject = hashes.get(ask.subject)
        if subject is None:
            subject = hashes[ask.subject] = subject_hash(settings, ask.subject)
        events.append(
            {
                "at": now,
                "type": item.type,
                "channel": ask.channel,
                "experiment": ask.experiment,
                "variant": ask.variant,
                "action": item.action,
                "subject": subject,
            }
        )
        if item.type == "impression" and ask.channel == "footer":
            spent.append({"subject": ask.subject, "asked_at": now, "channel": "footer"})
    return events, spent, dropped


# PostgreSQL: a beacon in one statement (see the module's docstring); one array per column.
_PG_RECORD = DriverStatement(
    """
    WITH recorded AS (
        INSERT INTO appeal_events (at, type, channel, experiment, variant, action, subject)
        SELECT :at, * FROM unnest(
            CAST(:type AS text[]), CAST(:channel AS text[]), CAST(:experiment AS text[]),
            CAST(:variant AS text[]), CAST(:action AS text[]), CAST(:subject AS text[])
        )
    )
    INSERT INTO appeal_asks (subject, asked_at, channel)
    SELECT spent, :at, 'footer' FROM unnest(CAST(:spent AS text[])) AS spent
    """,
    datetime_params=("at",),
    returns_rows=False,
)
_COLUMNS = ("type", "channel", "experiment", "variant", "action", "subject")


def record(db: Database, settings: Settings, reported: list[Reported], now: dt.datetime) -> Outcome:
    """Write a beacon's countable events (and the asks its footer impressions spend) at once:
    one statement on PostgreSQL, one INSERT per table in one transaction on SQLite."""
    events, spent, dropped = event_rows(settings, reported, now)
    if not events:
        return Outcome(0, dropped)
    if db.dialect == "postgresql":
        params: dict[str, Any] = {name: [e[name] for e in events] for name in _COLUMNS}
        params.update(at=now, spent=[s["subject"] for s in spent])
        # Retried once only on a connection found dead, whose statement never ran.
        db.run_idempotent(lambda conn: _PG_RECORD.execute(conn, params))
    else:
        with db.engine.begin() as conn:
            conn.execute(_EVENTS, events)
            if spent:
                conn.execute(_ASKS, spent)
    return Outcome(len(events), dropped)
