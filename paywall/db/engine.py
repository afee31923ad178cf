"""Engines configured for this service, and ``Database``: the one way to open a transaction.

Functions below the edges take a ``Session`` and never commit; the edge (a view, a CLI command, a
job) opens exactly one ``transaction()`` and the commit happens when it closes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

from paywall.db.errors import check_url

T = TypeVar("T")


def _pg_connect_args(lock_timeout_seconds: int, *, synchronous_commit: bool = True) -> dict[str, Any]:
    ms = int(lock_timeout_seconds * 1000)
    options = f"-c lock_timeout={ms} -c statement_timeout={ms * 6}"
    if not synchronous_commit:
        options += " -c synchronous_commit=off"
    return {"options": options, "connect_timeout": max(1, lock_timeout_seconds)}


def make_engine(url: str, *, pool_size: int = 5, lock_timeout_seconds: int = 5) -> Engine:
    """An engine configured for this service: WAL and immediate transactions on SQLite.

    Raises DatabaseURLError for a URL that cannot work, before anything connects."""
    check_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        memory = path in ("", ":memory:")
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": lock_timeout_seconds, "check_same_thread": False},
            # Pooled: opening a connection and setting its pragmas cost more than the access
            # check itself. Forked gunicorn workers drop the master's pool (post_fork), so no
            # file handle is shared across processes. In-memory databases cannot be pooled.
            poolclass=NullPool if memory else QueuePool,
            **({} if memory else {"pool_size": pool_size, "max_overflow": pool_size * 2}),
        )
        _configure_sqlite(engine, lock_timeout_seconds)
        return engine
    connect_args = _pg_connect_args(lock_timeout_seconds) if url.startswith("postgresql") else {}
    return create_engine(
        url,
        # SQL errors end up in logs (log.exception); their parameters carry reader ids and emails.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _configure_sqlite(engine: Engine, lock_timeout_seconds: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (pysqlite's own BEGIN
        # handling is wrong for SAVEPOINT and for writers racing to upgrade a read lock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(lock_timeout_seconds * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        # instead of one failing with "database is locked" when it upgrades a read lock.
        # sqlite_begin="none" (Database.autocommit_engine): no BEGIN at all, so each statement
        # commits on its own, as the driver runs it with isolation_level None.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode != "none":
            conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """An engine and its session factory; one per app or CLI run."""

    def __init__(self, url: str, *, pool_size: int = 5, lock_timeout_seconds: int = 5) -> None:
        self.url = url
        self.pool_size = pool_size
        self.lock_timeout_seconds = lock_timeout_seconds
        self.engine = make_engine(url, pool_size=pool_size, lock_timeout_seconds=lock_timeout_seconds)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @functools.cached_property
    def autocommit_engine(self) -> Engine:
        """Connections where each statement commits on its own, for ``run_idempotent``.

        On PostgreSQL a pool of its own, without the pre-ping round trip (``run_idempotent``
        retries instead) and without waiting for the WAL flush at commit: what it writes is the
        free-article meter, where a row lost in a database crash costs one extra free article.
        On SQLite the same pool as ``engine``, with no BEGIN (not SQLAlchemy's AUTOCOMMIT level,
        whose reset on check-in would hand transactions back to the driver; see _on_begin).
        """
        if self.dialect != "postgresql":
            return self.engine.execution_options(sqlite_begin="none")
        return create_engine(
            self.url,
            hide_parameters=True,
            isolation_level="AUTOCOMMIT",
            pool_size=self.pool_size,
            max_overflow=self.pool_size,
            pool_recycle=1800,
            # No ROLLBACK call when a connection goes back to the pool: in autocommit no
            # transaction is ever open, and the access check checks one out per request.
            pool_reset_on_return=None,
            connect_args=_pg_connect_args(self.lock_timeout_seconds, synchronous_commit=False),
        )

    @functools.cached_property
    def durable_autocommit_engine(self) -> Engine:
        """Like ``autocommit_engine``, but each commit waits for the WAL flush: for the Stripe
        inbox, whose row must be on disk before the 2xx tells Stripe to stop retrying. On SQLite
        the same as ``autocommit_engine`` (WAL with synchronous=NORMAL, as every write here)."""
        if self.dialect != "postgresql":
            return self.autocommit_engine
        return create_engine(
            self.url,
            hide_parameters=True,
            isolation_level="AUTOCOMMIT",
            pool_size=self.pool_size,
            max_overflow=self.pool_size,
            pool_recycle=1800,
            connect_args=_pg_connect_args(self.lock_timeout_seconds),
        )

    def run_idempotent(self, work: Callable[[Connection], T], *, durable: bool = False) -> T:
        """Run ``work`` on an autocommit connection; once more on a fresh one if that one was dead.

        ``durable``: the commit waits for the WAL flush (``durable_autocommit_engine``), for a
        write that must survive a crash once answered (a Stripe event). For the hot path, whose
        every statement is safe to repeat (the access check reads one
        statement and at most claims a meter slot idempotently): no BEGIN, no COMMIT and no
        pre-ping, so a check is one round trip. Instead of pinging first, a connection the database
        dropped (it restarted, or a proxy cut it) fails its first statement; then every pooled
        connection is discarded, as they went with it, and ``work`` runs again on a new one.
        """
        engine = self.durable_autocommit_engine if durable else self.autocommit_engine
        try:
            with engine.connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        (engine if self.dialect == "postgresql" else self.engine).dispose()
        with engine.connect() as conn:
            return work(conn)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises.

        ``readonly`` lets SQLite readers run beside a writer (a deferred BEGIN).
        """
        session = self.sessionmaker()
        try:
            with session.begin():
                if readonly and self.dialect == "sqlite":
                    # Options apply before BEGIN is emitted (see _on_begin).
                    session.connection(execution_options={"sqlite_begin": "DEFERRED"})
                yield session
        finally:
            session.close()

    def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        if self.dialect == "postgresql":
            for name in ("autocommit_engine", "durable_autocommit_engine"):
                if name in self.__dict__:
                    self.__dict__[name].dispose()
        self.engine.dispose()
