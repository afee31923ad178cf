"""Recording what the widget saw: a beacon's events in ``appeal_events``, footer impressions in
``appeal_asks`` (they spend the ask budget).

A beacon is ``{"events": [{"ask", "type", "action"?}, ...]}`` (at most ``MAX_EVENTS``). The shape is
checked strictly (a malformed beacon is a client bug: ``InvalidBeacon`` names the field); an event
whose ask is forged, expired, a staff preview's or not a page channel's is dropped and counted,
never an error (an ask outlives a page left open over night, and the widget cannot tell).

This runs beside the access check, thousands of events a second, so it is lean on purpose: one
HMAC per distinct ask in the beacon, no ORM, and no database round trip per beacon. In a gunicorn
worker (config/gunicorn.conf.py starts its ``Writer``) the rows are buffered and a background
thread writes them every 50 ms (or at 500 waiting) in one transaction of one executemany INSERT
per table; so an event, and the footer ask an impression spends, lands up to ~50 ms after its
202, and a worker killed outright loses its last 50 ms (a clean exit flushes). No money and no
access depends on one event; the ask budget is a few asks per days. Elsewhere (tests, a lone
process) each beacon is written before it is answered.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table

from paywall.config import Settings
from paywall.context import db_of
from paywall.db import Database, dialect_insert
from paywall.experiments.asks import Ask, InvalidAsk, ask_key, decode_ask, subject_hash
from paywall.experiments.definition import PAGE_CHANNELS
from paywall.models.appeals import ACTIONS, EVENT_TYPES, AppealAsk, AppealEvent
from paywall.widget.settings import appeal_settings

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# Events per beacon: the widget flushes about a second after the last one, so a page sends a few.
MAX_EVENTS = 50
# A worker's buffered events are written this often, or sooner when this many wait (Writer).
# Often, in small transactions: each flush is a burst of PostgreSQL work beside the access check,
# and the check's p99 rides on the bursts (bench/appeal_events.py, docs/experiments.md: at 2,000
# events/s its rise beside the intake was +210 to +245 % with 200 ms, +109 to +148 % with 50 ms,
# for the same CPU per event).
FLUSH_EVERY_SECONDS = 0.05
FLUSH_ROWS = 500
# Each event counts once per ask (per action for a click): a repeat in one beacon is dropped here,
# and across beacons the database keeps one row per (ask, type, action) (ix_appeal_events_once), so a
# beacon sent twice, or replayed by a script, counts once and an ask spends the budget once
# (appeal_asks.ask is unique). ``recorded`` in the answer counts what was accepted, before that.

_EVENTS = cast(Table, AppealEvent.__table__)
_ASKS = cast(Table, AppealAsk.__table__)


@functools.cache
def insert_statements(dialect: str) -> tuple[Any, Any]:
    """INSERT … ON CONFLICT DO NOTHING into appeal_events and appeal_asks (Core, executemany)."""
    return (
        dialect_insert(dialect, _EVENTS).on_conflict_do_nothing(),
        dialect_insert(dialect, _ASKS).on_conflict_do_nothing(),
    )


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
    seen: set[tuple[str, str, str]] = set()
    # Nothing reads appeal_asks without a budget: keep no per-reader rows then.
    budget = appeal_settings(settings).max_asks > 0
    events: list[dict[str, Any]] = []
    spent: list[dict[str, Any]] = []
    dropped = 0
    for item in reported:
        ask = _decoded(settings, item.ask, now, asks)
        if ask is None:
            dropped += 1
            continue
        if (item.ask, item.type, item.action) in seen:
            dropped += 1
            continue
        seen.add((item.ask, item.type, item.action))
        key = ask_key(item.ask)
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
                "ask": key,
            }
        )
        if budget and item.type == "impression" and ask.channel == "footer":
            spent.append({"subject": ask.subject, "asked_at": now, "channel": "footer", "ask": key})
    return events, spent, dropped


def write(db: Database, events: list[dict[str, Any]], spent: list[dict[str, Any]]) -> None:
    """Insert rows of ``event_rows`` (of any number of beacons): one executemany per table, in one
    transaction (SQLAlchemy sends a PostgreSQL executemany as multi-row INSERTs)."""
    if not events:
        return
    with db.engine.begin() as conn:
        into_events, into_asks = insert_statements(conn.dialect.name)
        conn.execute(into_events, events)
        if spent:
            conn.execute(into_asks, spent)


def record(db: Database, settings: Settings, reported: list[Reported], now: dt.datetime) -> Outcome:
    """Write a beacon's countable events (and the asks its footer impressions spend) now."""
    events, spent, dropped = event_rows(settings, reported, now)
    write(db, events, spent)
    return Outcome(len(events), dropped)


class Writer:
    """Where a worker's beacons go: straight to the database, or (``start``) into a buffer that a
    background thread writes every ``every`` seconds, or sooner when ``max_rows`` events wait.

    Buffered, a beacon costs its HMACs and a list append, and the database sees one transaction
    of two executemany INSERTs per flush instead of one write per beacon. The price: events (and
    the footer asks they spend) land up to ``every`` seconds late, and a worker killed outright
    (SIGKILL, a crash) loses what it had not flushed. A clean exit flushes (``close``: gunicorn's
    worker_exit hook, and atexit). A flush that fails is logged and its rows tried once more at the
    next flush; failing again, they are dropped and counted in the log. A request never fails for it.

    Unstarted (tests, ``flask run``, a lone process), every beacon is written before it is answered.
    """

    def __init__(
        self, db: Database, *, every: float = FLUSH_EVERY_SECONDS, max_rows: int = FLUSH_ROWS
    ) -> None:
        self.db = db
        self.every = every
        self.max_rows = max_rows
        self.lost = 0  # events dropped after a failed retry (for the log, and tests)
        self._lock = threading.Lock()  # the buffer
        self._flushing = threading.Lock()  # one flush at a time (the thread's, or close's)
        self._events: list[dict[str, Any]] = []
        self._spent: list[dict[str, Any]] = []
        self._retry: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def buffered(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Buffer from now on (in a gunicorn worker, after the fork: threads do not survive one)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="appeal-events-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def add(self, events: list[dict[str, Any]], spent: list[dict[str, Any]]) -> None:
        """Queue (or, unstarted, write) a beacon's rows."""
        if not events:
            return
        if self._thread is None:
            write(self.db, events, spent)
            return
        with self._lock:
            self._events.extend(events)
            self._spent.extend(spent)
            waiting = len(self._events)
        if waiting >= self.max_rows:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._events) + (len(self._retry[0]) if self._retry else 0)

    def flush(self) -> int:
        """Write what waits (a failed batch's second try first); the events written."""
        with self._flushing:
            with self._lock:
                batch = (self._events, self._spent)
                self._events, self._spent = [], []
            retry, self._retry = self._retry, None
            written = 0
            for rows, second_try in ((retry, True), (batch, False)):
                if rows is None or not rows[0]:
                    continue
                try:
                    write(self.db, *rows)
                except Exception as exc:  # never lose the thread, never fail a request
                    if second_try or self._retry is not None:
                        self.lost += len(rows[0])
                        log.error(
                            "appeal events: a write failed again (%s); %d events dropped (%d so far)",
                            type(exc).__name__,
                            len(rows[0]),
                            self.lost,
                        )
                    else:
                        log.warning(
                            "appeal events: a write failed (%s); its %d events are tried once more",
                            type(exc).__name__,
                            len(rows[0]),
                        )
                        self._retry = rows
                else:
                    written += len(rows[0])
            return written

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what waits (twice at most: a failed batch gets its retry)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=10)
        self.flush()
        if self._retry is not None:
            self.flush()


WRITER_KEY = "paywall.appeal_events_writer"


def writer_of(app: Flask) -> Writer:
    """The app's Writer (one per process; buffering once a gunicorn worker starts it)."""
    writer: Writer | None = app.extensions.get(WRITER_KEY)
    if writer is None:
        writer = app.extensions[WRITER_KEY] = Writer(db_of(app))
    return writer
