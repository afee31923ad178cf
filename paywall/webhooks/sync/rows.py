"""The rows an upsert touches: a per-transaction cache of them by Stripe id, the reader a field
names, and the guard that keeps an erased person's details out."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.readers.erased import mentions_erased
from paywall.readers.service import ensure_reader
from paywall.webhooks.sync.fields import Obj, read_text

T = TypeVar("T")
ROW_CACHE = "paywall.webhooks.rows"


# A key ``prefetch`` looked for and did not find: no query until ``remember`` adds the row.
MISSING = object()


def find_row(session: Session, model: type[T], column: Any, key: str) -> T | None:
    """The row with this Stripe id, remembered for the rest of the transaction (the locks held
    make it current), so the many lookups of one event's related rows cost one query each."""
    cache = session.info.setdefault(ROW_CACHE, {})
    found = cache.get((model, key))
    if found is MISSING:
        return None
    if found is None:
        found = session.scalar(select(model).where(column == key))
        if found is not None:
            cache[(model, key)] = found
    return cast("T | None", found)


def prefetch(session: Session, model: type[Any], column: Any, keys: set[str]) -> None:
    """Load the rows with these Stripe ids in one query for ``find_row``, and remember the ids
    that have none, so a batch of events looks up its related rows once, not once per event.

    Sound because every sync write of these models adds its row through ``remember`` (which
    replaces a MISSING mark), and the batch holds the advisory locks of the objects it touches."""
    cache = session.info.setdefault(ROW_CACHE, {})
    wanted = sorted(key for key in keys if (model, key) not in cache)
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        for row in session.scalars(select(model).where(column.in_(part))):
            cache[(model, getattr(row, column.key))] = row
        for key in part:
            cache.setdefault((model, key), MISSING)


def remember(session: Session, row: Any, key: str) -> None:
    """Add a new row and remember it under its Stripe id for ``find_row``."""
    session.add(row)
    session.info.setdefault(ROW_CACHE, {})[(type(row), key)] = row


READER_IDS = "paywall.webhooks.readers"


def reader_named(session: Session, external_id: Any) -> int | None:
    """The reader named by a Stripe field (created bare if the site never registered them),
    remembered for the transaction: a purchase names its reader in several objects (the Checkout
    Session, the subscription, the charge's metadata), and a batch holds many purchases."""
    name = read_text(external_id, 128)
    if name is None:
        return None
    known: dict[str, int] = session.info.setdefault(READER_IDS, {})
    if name not in known:
        known[name] = ensure_reader(session, name).id
    return known[name]


PERSONAL_FIELDS = ("email", "name")


def unless_erased(session: Session, obj: Obj, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the personal fields blanked when ``obj`` names an erased person's customer
    or address (paywall.erasure): a later event must not write back what an erasure removed."""
    if any(values.get(key) for key in PERSONAL_FIELDS) and mentions_erased(session, obj):
        values.update({key: None for key in PERSONAL_FIELDS if key in values})
    return values
