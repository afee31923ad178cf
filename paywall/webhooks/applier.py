"""The applier: drain the inbox in batches, many events per transaction.

The webhook request only records an event (``inbox.accept``); this applies it. A batch is the
oldest ``received`` rows, claimed in one transaction that also applies them and marks them done,
so an event is applied exactly once whatever happens around it:

- A worker killed mid-batch, or a database gone mid-batch, commits nothing: the rows are still
  ``received`` and the next batch (of this worker or another) takes them.
- Several workers share one backlog. On PostgreSQL the claim skips rows another worker holds
  (``FOR UPDATE SKIP LOCKED``), and the batch takes the advisory locks of every object it
  touches, in one global order, before applying: batches about different objects run in
  parallel; two about one object run one after the other, and newest-wins ordering does the
  rest (``sync.ordering``). On SQLite the batch holds the write lock, so workers take turns.
- A transient error (a lost connection, a lock timeout, a serialization failure) rolls the batch
  back to be tried again after a pause. A handler error on an unexpected payload rolls it back
  too; the batch is then tried again with that event marked ``failed`` (its error kept, for
  ``paywall events replay`` once the cause is fixed), so one bad event costs one extra
  transaction and never stops the others.

Derived facts (``sync.derived``) are settled once per batch, not once per event: a first purchase
is ten events about one payment, re-derived once. Rows are flushed when a query needs them and
once at the end of the batch, not after every event.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall import clock
from paywall.config import Settings
from paywall.db import Database, TransientDatabaseError, is_transient
from paywall.models import (
    CheckoutSession,
    Dispute,
    Invoice,
    Payment,
    Refund,
    StripeCustomer,
    StripeEvent,
    StripePrice,
    Subscription,
)
from paywall.readers.erased import any_erased, is_erased, stripe_identities
from paywall.webhooks.handlers import HANDLERS, related_ids
from paywall.webhooks.inbox import lock_key, source_of, take_locks
from paywall.webhooks.readers import redact
from paywall.webhooks.sync.derived import settled
from paywall.webhooks.sync.fields import InvalidField
from paywall.webhooks.sync.rows import prefetch, prefetch_readers

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100


class EventFailed(Exception):
    """A handler failed on one event's payload (not the database): the batch is rolled back and
    tried again with that event marked ``failed``. ``row_id`` is None when the failure could not
    be pinned on one event (settling the batch's derived facts failed)."""

    def __init__(self, row_id: int | None, error: str) -> None:
        super().__init__(error)
        self.row_id = row_id
        self.error = error


@dataclass
class Batch:
    """What one call of ``apply_batch`` did: outcome per event id, in claim order."""

    outcomes: dict[str, str] = field(default_factory=dict)
    row_ids: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.outcomes)

    def tally(self) -> Counter[str]:
        return Counter(self.outcomes.values())


@dataclass(frozen=True)
class Claimed:
    """A claimed inbox row: the columns applying needs, read without the ORM, so that marking
    it done is one UPDATE for the whole batch rather than a flush per event."""

    id: int
    stripe_event_id: str
    type: str
    payload: dict[str, Any]
    attempts: int


_TABLE = cast(Table, StripeEvent.__table__)

# Every row of a batch marked in one executemany: status, error, when and how often applied.
_MARK = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        error=bindparam("new_error"),
        processed_at=bindparam("new_processed_at", type_=_TABLE.c.processed_at.type),
        attempts=bindparam("new_attempts"),
    )
)


def claim(session: Session, limit: int) -> list[Claimed]:
    """The oldest ``received`` rows, at most ``limit``, locked for this transaction (PostgreSQL:
    rows another worker holds are skipped, not waited for)."""
    query = (
        select(_TABLE.c.id, _TABLE.c.stripe_event_id, _TABLE.c.type, _TABLE.c.payload, _TABLE.c.attempts)
        .where(_TABLE.c.status == "received")
        .order_by(_TABLE.c.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [
        Claimed(r.id, r.stripe_event_id, r.type, r.payload, r.attempts or 0) for r in session.execute(query)
    ]


# Stripe id prefix -> the table that keeps such objects, keyed by that id (``find_row``).
_PREFETCH: dict[str, tuple[type[Any], Any]] = {
    "cus_": (StripeCustomer, StripeCustomer.stripe_customer_id),
    "sub_": (Subscription, Subscription.stripe_subscription_id),
    "in_": (Invoice, Invoice.stripe_invoice_id),
    "ch_": (Payment, Payment.stripe_charge_id),
    "py_": (Payment, Payment.stripe_charge_id),
    "cs_": (CheckoutSession, CheckoutSession.stripe_checkout_session_id),
    "re_": (Refund, Refund.stripe_refund_id),
    "pyr_": (Refund, Refund.stripe_refund_id),
    "dp_": (Dispute, Dispute.stripe_dispute_id),
    "du_": (Dispute, Dispute.stripe_dispute_id),
    "price_": (StripePrice, StripePrice.stripe_price_id),
    "plan_": (StripePrice, StripePrice.stripe_price_id),
}


def _related(row: Claimed) -> set[str]:
    """The Stripe ids a claimed event touches (``handlers.related_ids``) and its prices."""
    obj = row.payload.get("data", {}).get("object", {})
    ids = related_ids(obj) if isinstance(obj, Mapping) else set()
    items = obj.get("items") if isinstance(obj, Mapping) else None
    for item in (items.get("data") if isinstance(items, Mapping) else None) or []:
        price = item.get("price") if isinstance(item, Mapping) else None
        if isinstance(price, Mapping) and isinstance(price.get("id"), str):
            ids.add(price["id"])
    return ids


def _reader_names(row: Claimed) -> list[Any]:
    """The reader fields of a claimed event's object (``rows.reader_named`` reads the same)."""
    obj = row.payload.get("data", {}).get("object", {})
    if not isinstance(obj, Mapping):
        return []
    meta = obj.get("metadata")
    return [obj.get("client_reference_id"), meta.get("reader") if isinstance(meta, Mapping) else None]


def _prepare_batch(session: Session, rows: Sequence[Claimed]) -> dict[int, set[str]]:
    """Before applying: the advisory locks of every object the batch touches, all at once in
    ascending order, so two batches cannot deadlock (PostgreSQL; SQLite's write lock already
    serializes); the rows of those objects, one query per table (``rows.prefetch``), and the
    readers they name; and whether
    any identity the batch names is erased, in one query. Returns each event's identities."""
    related = {row.id: _related(row) for row in rows}
    if session.get_bind().dialect.name == "postgresql":
        locks = {lock_key(i) for ids in related.values() for i in ids}
        locks |= {lock_key(row.stripe_event_id) for row in rows}
        take_locks(session, sorted(locks))
    by_table: dict[tuple[type[Any], Any], set[str]] = {}
    for ids in related.values():
        for stripe_id in ids:
            prefix = stripe_id[: stripe_id.find("_") + 1]
            if prefix in _PREFETCH:
                by_table.setdefault(_PREFETCH[prefix], set()).add(stripe_id)
    for (model, column), keys in by_table.items():
        prefetch(session, model, column, keys)
    prefetch_readers(session, (name for row in rows for name in _reader_names(row)))
    # With no erasure at all (one query), no payload needs walking for the identities it names.
    erasures = any_erased(session)
    identities = {row.id: stripe_identities(row.payload) if erasures else set() for row in rows}
    everyone = set().union(*identities.values())
    if everyone:
        is_erased(session, everyone)
    return identities


def _skip_reason(event: Mapping[str, Any], settings: Settings) -> str | None:
    """Why the event is not for a handler (another mode, an unknown type), else None."""
    expected_mode = settings.stripe_livemode
    if expected_mode is not None and bool(event.get("livemode")) != expected_mode:
        return f"livemode {bool(event.get('livemode'))} does not match the configured key"
    if str(event.get("type")) not in HANDLERS:
        return ""
    return None


def _apply_one(
    session: Session, row: Claimed, settings: Settings, failed: Mapping[int, str], identities: set[str]
) -> dict[str, Any]:
    """Apply one claimed event inside the batch's transaction; the values that mark its row."""
    event = row.payload
    mark: dict[str, Any] = {
        "row_id": row.id,
        "new_error": None,
        "new_processed_at": clock.now(),
        "new_attempts": row.attempts + 1,
    }
    if identities and is_erased(session, identities):
        # About an erased person (paywall.erasure): keep the event, not their details.
        session.execute(update(_TABLE).where(_TABLE.c.id == row.id).values(payload=redact(event)))
    skip = _skip_reason(event, settings)
    if skip is not None:
        return {**mark, "new_status": "ignored", "new_error": skip or None}
    if row.id in failed:
        return {**mark, "new_status": "failed", "new_error": failed[row.id]}
    try:
        outcome = HANDLERS[str(event.get("type"))](session, event["data"]["object"], source_of(event))
    except Exception as exc:
        raise _classify(exc, row, event) from exc
    return {**mark, "new_status": "ignored" if outcome == "ignored" else "processed"}


def _classify(exc: Exception, row: Claimed | None, event: Mapping[str, Any] | None) -> Exception:
    """A transient database error to retry the batch on, or the EventFailed naming the event."""
    if is_transient(exc) or isinstance(exc, IntegrityError):
        # A concurrent writer or an unavailable database: the whole batch is tried again.
        return TransientDatabaseError(type(exc).__name__)
    if row is not None:
        log.warning("stripe event %s (%s) failed: %s", row.stripe_event_id, row.type, type(exc).__name__)
    # An absurd value is named by its path in the event, e.g. "data.object.amount: ...".
    detail = exc.describe(event) if isinstance(exc, InvalidField) and event is not None else exc
    return EventFailed(row.id if row is not None else None, f"{type(exc).__name__}: {detail}"[:2000])


def _apply_claimed(
    session: Session, settings: Settings, limit: int, failed: Mapping[int, str], batch: Batch
) -> None:
    rows = claim(session, limit)
    if not rows:
        return
    batch.row_ids = [row.id for row in rows]
    identities = _prepare_batch(session, rows)
    marks = []
    try:
        with settled(session, savepoint=False):
            for row in rows:
                marks.append(_apply_one(session, row, settings, failed, identities[row.id]))
                batch.outcomes[row.stripe_event_id] = marks[-1]["new_status"]
        # The upserts do not flush each event (a flush per event was most of their cost): what
        # the database refuses shows here, once for the batch, and is narrowed down like a
        # failed settle, rather than at the commit where no event could be blamed.
        session.flush()
    except (EventFailed, TransientDatabaseError):
        raise
    except Exception as exc:
        # Settling the batch's derived facts failed: no single event to blame yet.
        raise _classify(exc, None, None) from exc
    session.execute(_MARK, marks)


def apply_batch(db: Database, settings: Settings, *, limit: int = DEFAULT_BATCH) -> Batch:
    """Claim and apply one batch in one transaction; an empty Batch when nothing is waiting.

    A handler error marks that event ``failed`` and the batch is applied again without it; an
    error no event can be blamed for (settling derived facts) is narrowed down by applying the
    batch one event per transaction. TransientDatabaseError goes to the caller, with the batch
    rolled back and left for the next try."""
    failed: dict[int, str] = {}
    while True:
        batch = Batch()
        try:
            with db.transaction() as session:
                _apply_claimed(session, settings, limit, failed, batch)
            return batch
        except EventFailed as exc:
            blamed = exc.row_id
            if blamed is None and len(batch.row_ids) == 1:
                # Settling one event's derived facts failed: that event is the bad one.
                blamed = batch.row_ids[0]
            if blamed is not None and blamed not in failed:
                failed[blamed] = exc.error
                continue
            return _one_by_one(db, settings, len(batch.row_ids) or limit)


def _one_by_one(db: Database, settings: Settings, count: int) -> Batch:
    """Apply up to ``count`` events one per transaction (after a batch failed as a whole)."""
    merged = Batch()
    for _ in range(count):
        single = apply_batch(db, settings, limit=1)
        if not single.size:
            break
        merged.outcomes.update(single.outcomes)
    return merged


def drain(db: Database, settings: Settings, *, limit: int = DEFAULT_BATCH) -> Counter[str]:
    """Apply batches until nothing is waiting; the outcomes counted. Transient errors go to the
    caller (a command or a test: the worker loop, ``run``, retries them instead)."""
    tally: Counter[str] = Counter()
    while True:
        batch = apply_batch(db, settings, limit=limit)
        if not batch.size:
            return tally
        tally.update(batch.tally())


def run(
    db: Database,
    settings: Settings,
    stop: threading.Event,
    *,
    limit: int = DEFAULT_BATCH,
    poll_seconds: float = 0.05,
    max_backoff_seconds: float = 30.0,
) -> None:
    """Apply batches until ``stop`` is set: at once while a backlog lasts, polling every
    ``poll_seconds`` when idle (an indexed query on the waiting rows), and backing off
    exponentially while the database is unavailable. Nothing here ends the loop but ``stop``."""
    backoff = 0.0
    while not stop.is_set():
        try:
            batch = apply_batch(db, settings, limit=limit)
        except Exception as exc:
            # Transient or not, the batch is rolled back and its events wait; a bug must not
            # stop the worker for every other event, and the log says what happened (no payload).
            backoff = min(max_backoff_seconds, max(0.25, backoff * 2))
            log.warning("stripe applier: batch failed (%s), retrying in %.2fs", type(exc).__name__, backoff)
            stop.wait(backoff)
            continue
        backoff = 0.0
        if batch.size:
            log.info("stripe applier: %s", ", ".join(f"{n} {k}" for k, n in sorted(batch.tally().items())))
        else:
            stop.wait(poll_seconds)
