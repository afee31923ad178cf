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


def find_row(session: Session, model: type[T], column: Any, key: str) -> T | None:
    """The row with this Stripe id, remembered for the rest of the transaction (the locks held
    make it current), so the many lookups of one event's related rows cost one query each."""
    cache = session.info.setdefault(ROW_CACHE, {})
    found = cache.get((model, key))
    if found is None:
        found = session.scalar(select(model).where(column == key))
        if found is not None:
            cache[(model, key)] = found
    return cast("T | None", found)


def remember(session: Session, row: Any, key: str) -> None:
    """Add a new row and remember it under its Stripe id for ``find_row``."""
    session.add(row)
    session.info.setdefault(ROW_CACHE, {})[(type(row), key)] = row


def reader_named(session: Session, external_id: Any) -> int | None:
    """The reader named by a Stripe field (created bare if the site never registered them)."""
    name = read_text(external_id, 128)
    if name is None:
        return None
    return ensure_reader(session, name).id


PERSONAL_FIELDS = ("email", "name")


def unless_erased(session: Session, obj: Obj, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the personal fields blanked when ``obj`` names an erased person's customer
    or address (paywall.erasure): a later event must not write back what an erasure removed."""
    if any(values.get(key) for key in PERSONAL_FIELDS) and mentions_erased(session, obj):
        values.update({key: None for key in PERSONAL_FIELDS if key in values})
    return values
