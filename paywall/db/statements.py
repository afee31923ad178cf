"""Statements that differ by database: the one place that switches on PostgreSQL or SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import any_, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def _dialect(where: Session | Connection | str) -> str:
    if isinstance(where, str):
        return where
    if isinstance(where, Session):
        return where.get_bind().dialect.name
    return where.dialect.name


def one_of(where: Session | Connection | str, column: Any, values: Iterable[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``: one parameter whatever the
    count, so the driver parses (and caches) one short statement instead of a new one with
    hundreds of placeholders for every batch of the Stripe applier."""
    wanted = list(values)
    if _dialect(where) == "postgresql":
        return column == any_(literal(wanted, postgresql.ARRAY(column.type)))
    return column.in_(wanted)


def dialect_insert(where: Session | Connection | str, target: Any) -> Any:
    """``INSERT`` for a database (a session, a connection or a dialect name), with its
    ``on_conflict_do_nothing`` and ``on_conflict_do_update``.

    Both dialects spell ON CONFLICT the same way, so callers write it once."""
    dialect = _dialect(where)
    if dialect == "postgresql":
        return postgresql.insert(target)
    if dialect == "sqlite":
        return sqlite.insert(target)
    raise ValueError(f"unsupported database {dialect!r}: paywall runs on PostgreSQL or SQLite")


def insert_ignore(session: Session, model: Any, values: dict[str, Any], conflict: Sequence[str]) -> bool:
    """INSERT … ON CONFLICT (conflict) DO NOTHING; True when the row was inserted.

    The unique key decides, so two writers racing for the same row cannot both win, on either
    database, and the loser's transaction stays usable (no IntegrityError to roll back).
    """
    # The Table, not the ORM class: an ORM-enabled INSERT does not report the rows it skipped.
    table = model.__table__
    stmt = (
        dialect_insert(session, table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    )
    # RETURNING says for certain whether this statement inserted the row (both databases support it).
    return session.execute(stmt.returning(table.c.id)).first() is not None
