"""The rows an upsert touches: a per-transaction cache of them by Stripe id, the reader a field
names, and the guard that keeps an erased person's details out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.db.statements import dialect_insert, one_of
from paywall.models import Reader
from paywall.readers.erased import mentions_erased
from paywall.webhooks.sync.fields import InvalidField, Obj, read_text

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
        for row in session.scalars(select(model).where(one_of(session, column, part))):
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
        known[name] = _ensure_reader_id(session, name)
    return known[name]


def _ensure_reader_id(session: Session, name: str) -> int:
    """The id of the reader ``name``, created bare if missing: INSERT … ON CONFLICT DO NOTHING
    RETURNING, then a read if another writer won the race. Core statements on the table, so the
    session is not flushed: an ORM look-up here flushed the batch's pending rows once per
    purchase, a statement per row and table instead of one per table for the batch."""
    table = Reader.__table__
    conn = session.connection()  # not session.execute: that would flush the pending rows first
    inserted = conn.execute(
        dialect_insert(session, table)
        .values(external_id=name)
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(table.c.id)
    ).scalar()
    if inserted is not None:
        return int(inserted)
    return int(conn.execute(select(table.c.id).where(table.c.external_id == name)).scalar_one())


def _reader_name(value: Any) -> str | None:
    try:
        return read_text(value, 128)
    except InvalidField:
        return None  # the handler fails the event on it, naming the field


def prefetch_readers(session: Session, names: Iterable[Any]) -> None:
    """Look up the readers these Stripe fields name in one query, for ``reader_named``: a batch of
    purchases names a reader in each, and one look-up each was a statement (and a flush) apiece."""
    known: dict[str, int] = session.info.setdefault(READER_IDS, {})
    wanted = sorted({n for value in names if (n := _reader_name(value)) is not None} - known.keys())
    table = Reader.__table__
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        for reader_id, external_id in session.execute(
            select(table.c.id, table.c.external_id).where(one_of(session, table.c.external_id, part))
        ):
            known[external_id] = reader_id


PERSONAL_FIELDS = ("email", "name")


def unless_erased(session: Session, obj: Obj, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the personal fields blanked when ``obj`` names an erased person's customer
    or address (paywall.erasure): a later event must not write back what an erasure removed."""
    if any(values.get(key) for key in PERSONAL_FIELDS) and mentions_erased(session, obj):
        values.update({key: None for key in PERSONAL_FIELDS if key in values})
    return values
