"""The event inbox: verify, store once, process in the same transaction, replay later.

A delivery is stored and processed in ONE transaction. A transient database error rolls both back
(the caller answers 503 and Stripe retries). A handler error on an unexpected payload rolls back
the handler's half-done work with the transaction, and a second transaction records the row as
``failed`` with the error, to be fixed and replayed (``receive``). Replay and reconcile, which go
on after a failure, catch it in a savepoint instead (``process(savepoint=True)``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall import clock
from paywall.config import Settings
from paywall.db import Database, TransientDatabaseError, is_transient
from paywall.models import ErasedIdentity, StripeEvent
from paywall.readers.erased import KNOWN, mentions_erased, stripe_identities
from paywall.webhooks.handlers import HANDLERS, related_ids
from paywall.webhooks.readers import redact
from paywall.webhooks.sync.derived import settled
from paywall.webhooks.sync.fields import (
    InvalidField,
    has_non_finite,
    json_safe,
    read_id,
    read_timestamp,
    safe_id,
)
from paywall.webhooks.sync.ordering import Source

log = logging.getLogger(__name__)


class InvalidEvent(Exception):
    """The delivery is not a verified Stripe event (bad signature, stale, not an event)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def verify(raw: bytes, header: str | None, secrets: tuple[str, ...], tolerance: int) -> dict[str, Any]:
    """The event in ``raw`` if its signature matches one of ``secrets`` (rotation), else InvalidEvent."""
    if not header:
        raise InvalidEvent("Stripe-Signature", "The Stripe-Signature header is missing.")
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("body", "The body is not UTF-8.") from None
    last_error = "No signature matches."
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            # Stripe's messages name what is wrong (no match, stale timestamp) and no secret.
            last_error = str(exc.user_message or exc)
            continue
        break
    else:
        raise InvalidEvent("Stripe-Signature", last_error)
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise InvalidEvent("body", "The body is not JSON.") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise InvalidEvent("body", "The body is not a Stripe event.")
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise InvalidEvent("body", "The event lacks id, type, created or data.object.")
    # The envelope keys the inbox row itself: an absurd one cannot be recorded, so it is refused.
    for field, read in (("id", read_id), ("created", read_timestamp)):
        try:
            if read(event.get(field)) is None:
                raise InvalidField("is missing")
        except InvalidField as exc:
            raise InvalidEvent(field, f"The event's {field} is not valid: {exc.reason}.") from None
    return event


def lock_key(stripe_id: str) -> int:
    """A stable signed 64-bit number for an advisory lock on ``stripe_id``."""
    return int.from_bytes(hashlib.blake2b(stripe_id.encode(), digest_size=8).digest(), "big", signed=True)


def lock_keys(event: Mapping[str, Any]) -> list[int]:
    """The sorted lock numbers of every id the event touches: any two events that write one row
    share at least one, and taking them in one global order cannot deadlock."""
    obj = event.get("data", {}).get("object", {})
    return sorted({lock_key(i) for i in related_ids(obj)} | {lock_key(str(event.get("id")))})


def lock(session: Session, event: Mapping[str, Any]) -> None:
    """Serialize work on the objects an event touches (PostgreSQL; SQLite writers are serial anyway)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    take_locks(session, lock_keys(event))


def take_locks(session: Session, keys: list[int]) -> None:
    """Transaction-scoped advisory locks on ``keys`` in ascending order, in one round trip."""
    if keys:
        session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(:keys) AS k ORDER BY 1) AS ordered"
            ),
            {"keys": sorted(keys)},
        )


@dataclass(frozen=True)
class Delivery:
    event_id: str
    outcome: str


def _source(event: Mapping[str, Any]) -> Source:
    return Source(
        at=dt.datetime.fromtimestamp(int(event["created"]), dt.UTC),
        event_id=str(event["id"]),
        livemode=bool(event.get("livemode")),
        event_type=str(event.get("type")),
    )


class HandlerFailed(Exception):
    """A handler failed on the event's payload (not the database): the caller rolls back the
    transaction, then records the event ``failed`` with ``error`` in one of its own."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _prepare(
    session: Session, row: StripeEvent, event: Mapping[str, Any], settings: Settings, erased: bool | None
) -> str | None:
    """Count the attempt and keep an erased person's details out of the row; the outcome when the
    event is not for a handler (another mode, an unknown type), else None."""
    row.attempts = (row.attempts or 0) + 1
    row.processed_at = clock.now()
    if mentions_erased(session, event) if erased is None else erased:
        # About an erased person (paywall.erasure): keep the event, not their details.
        row.payload = redact(row.payload or dict(event))
    expected_mode = settings.stripe_livemode
    if expected_mode is not None and bool(event.get("livemode")) != expected_mode:
        row.status = "ignored"
        row.error = f"livemode {bool(event.get('livemode'))} does not match the configured key"
        return row.status
    if str(event.get("type")) not in HANDLERS:
        row.status, row.error = "ignored", None
        return row.status
    return None


def process(
    session: Session,
    row: StripeEvent,
    event: Mapping[str, Any],
    settings: Settings,
    *,
    savepoint: bool = True,
    erased: bool | None = None,
) -> str:
    """Run the event's handler; record the outcome on the inbox row.

    With ``savepoint`` a handler error is caught in a savepoint and the row is marked ``failed``
    in the same transaction. Without it the error is raised as HandlerFailed, for the caller to
    roll back and record (``receive``: no SAVEPOINT/RELEASE pair on every event for the rare
    failure). ``erased``, when known, is whether the event names an erased person."""
    ignored = _prepare(session, row, event, settings, erased)
    if ignored is not None:
        return ignored
    handler = HANDLERS[str(event.get("type"))]
    try:
        with settled(session, savepoint=savepoint):
            outcome = handler(session, event["data"]["object"], _source(event))
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, IntegrityError):
            # A concurrent writer or an unavailable database: let the whole delivery be retried.
            raise TransientDatabaseError(str(type(exc).__name__)) from exc
        log.warning("stripe event %s (%s) failed: %s", row.stripe_event_id, row.type, type(exc).__name__)
        # An absurd value is named by its path in the event, e.g. "data.object.amount: ...".
        detail = exc.describe(event) if isinstance(exc, InvalidField) else exc
        error = f"{type(exc).__name__}: {detail}"[:2000]
        if not savepoint:
            raise HandlerFailed(error) from exc
        row.status, row.error = "failed", error
        return row.status
    row.status = "ignored" if outcome == "ignored" else "processed"
    row.error = None
    return row.status


def _seen(session: Session, event: Mapping[str, Any]) -> tuple[int | None, bool | None]:
    """The inbox row id of an event already stored, and whether the event names an erased person
    (None when that needs ``mentions_erased``), in one query: the inbox asks both of every event."""
    keys = sorted(stripe_identities(event))
    stored = select(StripeEvent.id).where(StripeEvent.stripe_event_id == str(event["id"])).scalar_subquery()
    if not keys:
        return session.execute(select(stored)).scalar(), False
    any_erased = exists().where(ErasedIdentity.identity.in_(keys))
    found, erased = session.execute(select(stored, any_erased)).one()
    if not erased:
        # None of them is erased: the sync's own look-ups of these identities need no query.
        session.info.setdefault(KNOWN, {}).update(dict.fromkeys(keys, False))
    return found, (False if not erased else None)


def _receive(
    session: Session, settings: Settings, event: Mapping[str, Any], failed: HandlerFailed | None
) -> Delivery:
    event_id = str(event["id"])
    lock(session, event)
    existing, erased = _seen(session, event)
    if existing is not None:
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == existing)
            .values(deliveries=func.coalesce(StripeEvent.deliveries, 1) + 1)
        )
        return Delivery(event_id, "duplicate")
    obj = event["data"]["object"]
    row = StripeEvent(
        stripe_event_id=event_id,
        type=str(event["type"])[:100],
        api_version=(str(event["api_version"])[:64] if event.get("api_version") else None),
        livemode=bool(event.get("livemode")),
        created=clock.from_timestamp(event["created"]),
        object_id=safe_id(obj),
        payload=json_safe(event) if has_non_finite(event) else dict(event),
        received_at=clock.now(),
        status="received",
        attempts=0,
        deliveries=1,
    )
    # Added after processing, so the row is written once (one INSERT, no UPDATEs); the advisory
    # locks (PostgreSQL) or the write lock (SQLite) keep a duplicate out meanwhile.
    if failed is None:
        outcome = process(session, row, event, settings, savepoint=False, erased=erased)
    else:
        outcome = _prepare(session, row, event, settings, erased) or "failed"
        if outcome == "failed":
            row.status, row.error = outcome, failed.error
    session.add(row)
    return Delivery(event_id, outcome)


def receive(db: Database, settings: Settings, event: Mapping[str, Any]) -> Delivery:
    """Store a verified event once and process it, all in one transaction.

    A handler error rolls that transaction back; a second one records the event ``failed`` (if no
    delivery of it was recorded in between), so a bad event costs two transactions and every
    good one none of the savepoint statements that would spare them."""
    try:
        with db.transaction() as session:
            return _receive(session, settings, event, None)
    except HandlerFailed as failed:
        with db.transaction() as session:
            return _receive(session, settings, event, failed)


def replay(
    db: Database,
    settings: Settings,
    *,
    failed: bool = False,
    event_id: str | None = None,
    since: dt.datetime | None = None,
) -> Counter[str]:
    """Re-run stored events through the same handlers, oldest first, one transaction each."""
    query = select(StripeEvent.id).order_by(StripeEvent.created, StripeEvent.id)
    if failed:
        query = query.where(StripeEvent.status == "failed")
    if event_id:
        query = query.where(StripeEvent.stripe_event_id == event_id)
    if since:
        query = query.where(StripeEvent.created >= since)
    with db.transaction(readonly=True) as session:
        ids = list(session.scalars(query))
    tally: Counter[str] = Counter()
    for pk in ids:
        with db.transaction() as session:
            row = session.get(StripeEvent, pk)
            if row is None:
                continue
            lock(session, row.payload)
            tally[process(session, row, row.payload, settings)] += 1
    return tally


def list_events(
    session: Session,
    *,
    status: str | None = None,
    type_: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[StripeEvent]:
    """Inbox rows, newest received first; ``before`` pages by inbox row id."""
    query = select(StripeEvent).order_by(StripeEvent.id.desc()).limit(limit)
    if status:
        query = query.where(StripeEvent.status == status)
    if type_:
        query = query.where(StripeEvent.type == type_)
    if before:
        query = query.where(StripeEvent.id < before)
    return list(session.scalars(query))
