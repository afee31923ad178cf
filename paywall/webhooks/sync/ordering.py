"""The ordering rule: which state of a Stripe object a mirrored row keeps, whatever the order.

Every upsert takes a Session and a ``Source`` and never commits. The webhook handlers, the replay
command, ``paywall stripe sync`` and /thanks all call the same upserts.

1. Each mirrored row remembers the source of the state it holds (``synced_event_at``,
   ``synced_event_id``). An incoming state replaces it when its key is not smaller, comparing
   ``(second, fetched, progress, event id)`` in that order:
   - ``second``: the event's ``created`` (whole seconds). A fetched object (``paywall stripe sync``)
     uses the time it was fetched.
   - ``fetched``: within one second, a fetched object beats any event (it is the current state).
   - ``progress``: within one second, the state that is further along wins. Subscriptions compare
     (period end, status: incomplete < trialing < active < past_due < unpaid/paused < canceled,
     ended, canceled); invoices (status: draft < open < uncollectible < paid/void, attempt_count,
     amount_paid); charges (amount_refunded); refunds (pending < succeeded/failed/canceled);
     disputes (open < under review < closed, reinstated); Checkout Sessions (open <
     complete/expired, unpaid < paid); customers (deleted last). Each object's module holds its rank.
   - ``event id``: a last, arbitrary but fixed tie-break, so the final row never depends on the
     delivery order. Re-applying the same event is a no-op.
2. Links are facts, not state: a Stripe id, reader, campaign or donor detail, once known, is never
   cleared by a later state that lacks it (a newer state may replace it with another value).
3. Derived facts are recomputed from the stored rows after every change (``derived``).
4. Times Stripe does not state are the earliest event that shows them, stale or not, so the
   first-processed event does not decide them: a dispute's ``closed_at`` and funds movements, a
   Checkout Session's ``completed_at``, a customer's ``deleted_at``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from paywall import clock

FETCH_PREFIX = "fetch:"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a state comes from: an event (its id and ``created``) or a fetch (now)."""

    at: dt.datetime
    event_id: str
    livemode: bool = False
    event_type: str = ""

    @property
    def fetched(self) -> bool:
        return self.event_id.startswith(FETCH_PREFIX)

    @classmethod
    def fetch(cls, livemode: bool = False, at: dt.datetime | None = None) -> Source:
        """A source for objects read from Stripe's API just now: fresher than any event."""
        when = at or clock.now()
        return cls(at=when, event_id=FETCH_PREFIX + when.isoformat(), livemode=livemode)


def second(value: dt.datetime) -> dt.datetime:
    """``value`` in whole seconds: Stripe's ``created`` has no finer grain."""
    return value.replace(microsecond=0)


def wins(row: Any, src: Source, new_rank: tuple[Any, ...], old_rank: tuple[Any, ...]) -> bool:
    """Whether ``src``'s state replaces the row's (rule 1 above)."""
    if row.synced_event_at is None:
        return True
    stored_id = row.synced_event_id or ""
    new_key = (second(src.at), src.fetched, new_rank, src.event_id)
    old_key = (second(row.synced_event_at), stored_id.startswith(FETCH_PREFIX), old_rank, stored_id)
    return new_key >= old_key


def assign(row: Any, values: Mapping[str, Any], links: Iterable[str] = ()) -> bool:
    """Assign changed values; ``links`` are never cleared by None. Returns whether anything changed.

    An upsert that changed nothing skips its linking: every related row's own upsert already
    passed its facts on when it changed (links are symmetric), so there is nothing new to derive."""
    keep = set(links)
    changed = False
    for key, value in values.items():
        if value is None and key in keep:
            continue
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def fill(row: Any, key: str, value: Any) -> bool:
    """Set ``key`` only when it is still empty."""
    if value is None or getattr(row, key) is not None:
        return False
    setattr(row, key, value)
    return True


def earliest(row: Any, key: str, value: dt.datetime | None) -> bool:
    """Keep the earliest time seen for ``key``: the minimum over events, whatever their order."""
    current = getattr(row, key)
    if value is None or (current is not None and current <= value):
        return False
    setattr(row, key, value)
    return True


def stamp(row: Any, src: Source) -> None:
    """Record ``src`` as the source of the state the row now holds."""
    row.synced_event_at = src.at
    row.synced_event_id = src.event_id
    row.livemode = src.livemode


def outcome_of(created: bool, changed: bool) -> str:
    """What an upsert did to its row: ``created``, ``updated`` or ``unchanged``."""
    if created:
        return "created"
    return "updated" if changed else "unchanged"
