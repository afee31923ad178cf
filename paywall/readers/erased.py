"""Erased identities: recognise an erased person's Stripe customer ids and addresses in later data.

Erasure blanks what is stored, but Stripe keeps sending events about the same customer and charges,
carrying the address and name again. The sync and the inbox consult these markers before writing
personal fields or storing a payload, so an erasure is never undone by a later event or a replay.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.db import insert_ignore
from paywall.db.statements import one_of
from paywall.models import ErasedIdentity, Reader


def email_identity(email: str) -> str:
    """``email:`` and the SHA-256 hex of the trimmed, lower-cased address (never the address)."""
    return "email:" + hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def customer_identity(stripe_customer_id: str) -> str:
    return "customer:" + stripe_customer_id[:90]


def identities(*, customer_ids: Iterable[str | None] = (), emails: Iterable[str | None] = ()) -> set[str]:
    """The marker keys of these customer ids and addresses (blanks skipped)."""
    keys = {customer_identity(c) for c in customer_ids if c}
    keys |= {email_identity(e) for e in emails if e and e.strip()}
    return keys


def stripe_identities(payload: Any) -> set[str]:
    """Every customer id and address a Stripe object or event names, at any depth."""
    customer_ids: set[str] = set()
    emails: set[str] = set()
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            if value.get("object") == "customer" and isinstance(value.get("id"), str):
                customer_ids.add(value["id"])
            for key, item in value.items():
                if key == "customer" and isinstance(item, str):
                    customer_ids.add(item)
                elif isinstance(key, str) and "email" in key and isinstance(item, str) and "@" in item:
                    emails.add(item)
                elif isinstance(item, Mapping | list):
                    stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return identities(customer_ids=customer_ids, emails=emails)


# Per transaction (session): identity -> erased?, so the inbox's look-up of a whole event answers
# the sync's look-ups of the objects inside it without another query.
KNOWN = "paywall.readers.erased"


# Per transaction (session): whether any identity is erased at all. Most deployments have few or
# no erasures, and walking every event's payload for its identities was a tenth of the Stripe
# applier's CPU; with none erased there is nothing to look for.
ANY_ERASED = "paywall.readers.any_erased"


def any_erased(session: Session) -> bool:
    """Whether any identity has been erased (one query per transaction)."""
    known: bool | None = session.info.get(ANY_ERASED)
    if known is None:
        known = session.execute(select(ErasedIdentity.__table__.c.identity).limit(1)).first() is not None
        session.info[ANY_ERASED] = known
    return known


def mark_erased(session: Session, keys: Iterable[str]) -> int:
    """Remember these identities as erased; returns how many were new."""
    now = clock.now()
    wanted = sorted(set(keys))
    session.info.pop(KNOWN, None)
    session.info.pop(ANY_ERASED, None)
    return sum(
        insert_ignore(session, ErasedIdentity, {"identity": key, "erased_at": now}, ["identity"])
        for key in wanted
    )


def is_erased(session: Session, keys: Iterable[str]) -> bool:
    """Whether any of these identities belongs to an erased person."""
    known: dict[str, bool] = session.info.setdefault(KNOWN, {})
    wanted = set(keys)
    unknown = sorted(wanted - known.keys())
    if unknown:
        found = set(
            session.scalars(
                select(ErasedIdentity.identity).where(one_of(session, ErasedIdentity.identity, unknown))
            )
        )
        known.update({key: key in found for key in unknown})
    return any(known[key] for key in wanted)


def mentions_erased(session: Session, payload: Any) -> bool:
    """Whether a Stripe object or event names an erased customer or address."""
    return any_erased(session) and is_erased(session, stripe_identities(payload))


@dataclasses.dataclass
class Subject:
    """The person being erased: their reader row, and the Stripe customer ids and addresses found
    for them so far (each eraser adds what its tables know, and later ones use it)."""

    reader: Reader
    stripe_customer_ids: set[str] = dataclasses.field(default_factory=set)
    emails: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if self.reader.email:
            self.emails.add(self.reader.email)

    def lowered_emails(self) -> list[str]:
        """The addresses as compared in SQL (``lower(column) IN …``)."""
        return sorted({e.strip().lower() for e in self.emails if e.strip()})

    def identities(self) -> set[str]:
        return identities(customer_ids=self.stripe_customer_ids, emails=self.emails)
