"""The event inbox: verify a delivery, record it once, answer at once; replay later.

The webhook request verifies the signature and records the raw event in one durable statement
(``accept``), then answers 2xx: ``duplicate`` for a repeated delivery, ``ignored`` for a type no
handler takes or another mode, else ``queued``. Applying the event is the applier's job
(``paywall.webhooks.applier``), in batches apart from the request, as Stripe asks of endpoints
("return a 2xx quickly, before any complex logic"). A transient database error while recording
answers 503, and Stripe retries.
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
from sqlalchemy import JSON, Text, bindparam, cast, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from paywall import clock
from paywall.config import Settings
from paywall.db import Database, TransientDatabaseError, is_transient
from paywall.db.statements import dialect_insert
from paywall.models import StripeEvent
from paywall.webhooks.handlers import HANDLERS
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


_UNPARSED = object()
NOT_JSON = object()  # ``verify(parsed=NOT_JSON)``: the caller found the body is not JSON


def verify(
    raw: bytes, header: str | None, secrets: tuple[str, ...], tolerance: int, *, parsed: Any = _UNPARSED
) -> dict[str, Any]:
    """The event in ``raw`` if its signature matches one of ``secrets`` (rotation), else InvalidEvent.

    ``parsed``: ``raw`` already parsed as JSON by the caller (or ``NOT_JSON``), used only once
    the signature matched, so the body is parsed once per request."""
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
    if parsed is _UNPARSED:
        try:
            parsed = json.loads(payload)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
            parsed = NOT_JSON
    if parsed is NOT_JSON:
        raise InvalidEvent("body", "The body is not JSON.")
    event = parsed
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


def source_of(event: Mapping[str, Any]) -> Source:
    """The ordering source of an event: its creation time and id (``sync.ordering``)."""
    return Source(
        at=dt.datetime.fromtimestamp(int(event["created"]), dt.UTC),
        event_id=str(event["id"]),
        livemode=bool(event.get("livemode")),
        event_type=str(event.get("type")),
    )


_ACCEPT: dict[str, Any] = {}


def _accept_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT (stripe_event_id) DO UPDATE deliveries + 1 RETURNING deliveries: one
    statement stores a new event or counts a repeated delivery, and says which it was.

    The payload is bound as the text Stripe signed (``CAST … AS JSON`` on PostgreSQL), not
    re-serialized from the parsed event: the inbox keeps Stripe's exact bytes, and the request
    spares a second JSON encoding of the whole event. Built once per database; executing a
    prepared Core statement costs a fraction of building one per request."""
    stmt = _ACCEPT.get(dialect)
    if stmt is None:
        table = StripeEvent.__table__
        raw = bindparam("payload", type_=Text)
        payload = cast(raw, JSON) if dialect == "postgresql" else raw
        stmt = (
            dialect_insert(dialect, table)
            .values(
                {
                    **{c: bindparam(c, type_=table.c[c].type) for c in _ACCEPT_COLUMNS},
                    "payload": payload,
                    "status": "received",
                    "attempts": 0,
                    "deliveries": 1,
                }
            )
            .on_conflict_do_update(
                index_elements=["stripe_event_id"],
                set_={"deliveries": func.coalesce(table.c.deliveries, 1) + 1},
            )
            .returning(table.c.deliveries)
        )
        _ACCEPT[dialect] = stmt
    return stmt


_PG_ACCEPT = (
    "INSERT INTO stripe_events (stripe_event_id, type, api_version, livemode, created, object_id,"
    " received_at, payload, status, attempts, deliveries) VALUES (%(stripe_event_id)s, %(type)s,"
    " %(api_version)s, %(livemode)s, %(created)s, %(object_id)s, %(received_at)s,"
    " CAST(%(payload)s AS JSON), 'received', 0, 1) ON CONFLICT (stripe_event_id) DO NOTHING"
)
_PG_REDELIVERED = (
    "UPDATE stripe_events SET deliveries = coalesce(deliveries, 1) + 1"
    " WHERE stripe_event_id = %(stripe_event_id)s"
)

_ACCEPT_COLUMNS = (
    "stripe_event_id",
    "type",
    "api_version",
    "livemode",
    "created",
    "object_id",
    "received_at",
)


def stored_text(raw: bytes, event: Mapping[str, Any]) -> str:
    """The payload text to store: Stripe's bytes, unless they hold NaN or an infinity, which
    Python's json parses and PostgreSQL's json type refuses (then the ``json_safe`` copy)."""
    if (b"NaN" in raw or b"Infinity" in raw) and has_non_finite(event):
        return json.dumps(json_safe(event))
    return raw.decode("utf-8")


def outcome_now(settings: Settings, event: Mapping[str, Any]) -> str:
    """What the answer to Stripe can say before the event is applied: ``ignored`` for a type no
    handler takes or another mode than the configured key's, else ``queued``. The row is still
    applied (marked ignored, and redacted if it names an erased person) by the applier."""
    expected_mode = settings.stripe_livemode
    if expected_mode is not None and bool(event.get("livemode")) != expected_mode:
        return "ignored"
    return "queued" if str(event.get("type")) in HANDLERS else "ignored"


def accept(db: Database, settings: Settings, raw: bytes, event: Mapping[str, Any]) -> Delivery:
    """Record a verified event durably in one statement and say what the answer is: ``duplicate``
    for a repeated delivery, else ``outcome_now``. Applying it is the applier's job
    (``paywall.webhooks.applier``), apart from the request, as Stripe asks of endpoints.

    One autocommit INSERT on a connection that waits for the WAL flush: when Stripe reads the 2xx
    the event is on disk. A connection the database dropped is retried once on a fresh one; if
    the first attempt did commit, the retry counts one delivery too many, which is harmless."""
    event_id = str(event["id"])
    obj = event["data"]["object"]
    values = {
        "stripe_event_id": event_id,
        "type": str(event["type"])[:100],
        "api_version": (str(event["api_version"])[:64] if event.get("api_version") else None),
        "livemode": bool(event.get("livemode")),
        "created": clock.from_timestamp(event["created"]),
        "object_id": safe_id(obj),
        "received_at": clock.now(),
        "payload": stored_text(raw, event),
    }
    if db.dialect == "postgresql":
        # The driver's own statement: every value is already what psycopg binds (aware UTC
        # datetimes, text), so SQLAlchemy's compile and bind-processing are skipped on the
        # service's busiest write, while its error handling (a dropped connection is retried,
        # a lost database is transient) stays. A new event is the one INSERT with no RETURNING
        # to read (rowcount says it); only a repeated delivery costs an UPDATE more.
        def record(conn: Connection) -> int:
            if conn.exec_driver_sql(_PG_ACCEPT, values).rowcount == 1:
                return 1
            conn.exec_driver_sql(_PG_REDELIVERED, values)
            return 2
    else:
        stmt = _accept_statement(db.dialect)

        def record(conn: Connection) -> int:
            return int(conn.execute(stmt, values).scalar_one())

    try:
        deliveries = db.run_idempotent(record, durable=True)
    except Exception as exc:
        if is_transient(exc):
            raise TransientDatabaseError(type(exc).__name__) from exc
        raise
    if deliveries > 1:
        return Delivery(event_id, "duplicate")
    return Delivery(event_id, outcome_now(settings, event))


def replay(
    db: Database,
    settings: Settings,
    *,
    failed: bool = False,
    event_id: str | None = None,
    since: dt.datetime | None = None,
) -> Counter[str]:
    """Re-run stored events through the same path as new ones: mark them ``received`` again, in
    one statement, and apply the backlog (``applier.drain``: batches, oldest first). A running
    applier may take some of them first; each is applied once either way. The outcomes of the
    chosen events are counted when the backlog is drained."""
    from paywall.webhooks import applier

    chosen = select(StripeEvent.id)
    if failed:
        chosen = chosen.where(StripeEvent.status == "failed")
    if event_id:
        chosen = chosen.where(StripeEvent.stripe_event_id == event_id)
    if since:
        chosen = chosen.where(StripeEvent.created >= since)
    with db.transaction() as session:
        ids = list(session.scalars(chosen))
        for start in range(0, len(ids), 500):
            session.execute(
                update(StripeEvent)
                .where(StripeEvent.id.in_(ids[start : start + 500]))
                .values(status="received")
            )
    applier.drain(db, settings)
    tally: Counter[str] = Counter()
    with db.transaction(readonly=True) as session:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            tally.update(session.scalars(select(StripeEvent.status).where(StripeEvent.id.in_(part))))
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
