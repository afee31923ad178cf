"""Small SQL helpers shared by the mailer's ledgers (both SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: Any, values: dict[str, Any], conflict: Sequence[str]) -> bool:
    """INSERT … ON CONFLICT (conflict) DO NOTHING; True when the row was inserted.

    The unique key decides, so two senders racing for the same row cannot both win, on either
    database, and the loser's transaction stays usable (no IntegrityError to roll back).
    """
    dialect = session.get_bind().dialect.name
    # The Table, not the ORM class: an ORM-enabled INSERT does not report the rows it skipped.
    table = model.__table__
    ins: Any
    if dialect == "postgresql":
        ins = postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    elif dialect == "sqlite":
        ins = sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    else:  # pragma: no cover - only the two supported databases
        raise ValueError(f"unsupported database {dialect!r}: paywall runs on PostgreSQL or SQLite")
    # RETURNING says for certain whether this statement inserted the row (both databases support it).
    return session.execute(ins.returning(table.c.id)).first() is not None
