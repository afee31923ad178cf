"""The database: declarative base, engine set-up, and the one way to open a transaction.

Functions below the edges take a ``Session`` and never commit; the edge (a view, a CLI command, a
job) opens exactly one ``transaction()`` and the commit happens when it closes.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, MetaData, create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.types import TypeDecorator

# Every constraint gets a predictable name, so migrations can drop and alter them on PostgreSQL and
# in SQLite's batch mode alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    and made aware again on the way out. Naive datetimes are refused on the way in: they are bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: UTCDateTime(),
        # BIGINT on PostgreSQL; INTEGER on SQLite, where only that type autoincrements a key.
        int: BigInteger().with_variant(Integer(), "sqlite"),
        dict[str, Any]: JSON(),
    }


class TransientDatabaseError(Exception):
    """The database was unreachable, busy or timed out: the caller may retry later."""


TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
}


def is_transient(exc: BaseException) -> bool:
    """Whether a database error is worth retrying (connection lost, lock timeout, deadlock, busy)."""
    if isinstance(exc, TransientDatabaseError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate and (sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")):
            return True
        if isinstance(exc, OperationalError):
            text = str(orig).lower()
            # SQLite: "database is locked", "unable to open database file", disk I/O
            if sqlstate is None:
                return True
            return "locked" in text or "connection" in text
    return False


T = TypeVar("T")


class DatabaseURLError(Exception):
    """The database URL cannot be used; the message says what to fix (and never shows a password)."""


URL_HELP = (
    "set PAYWALL_DATABASE_URL (or [database] url) to e.g. postgresql+psycopg://user@host/dbname "
    "or sqlite:////absolute/path/paywall.sqlite3"
)
MISSING_TABLE = re.compile(r'no such table: (\w+)|relation "(\w+)" does not exist')


def check_url(url: str) -> URL:
    """The parsed URL, or a DatabaseURLError naming what is wrong: the syntax, the database, the driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError(f"the database URL is not one SQLAlchemy can read; {URL_HELP}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseURLError(f"database {backend!r} is not supported (sqlite or postgresql); {URL_HELP}")
    try:
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseURLError(
            f"database driver {parsed.drivername!r} is not available ({exc}); {URL_HELP}"
        ) from None
    return parsed


def safe_url(url: str) -> str:
    """The URL without its password, for output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable URL)"


def describe_error(exc: BaseException, url: str) -> str | None:
    """One line for an operator saying what is wrong with the database and what to do; None when
    the error is not about the URL, the connection or a missing schema (a bug: keep its traceback)."""
    if isinstance(exc, DatabaseURLError):
        return str(exc)
    if not isinstance(exc, DBAPIError):
        return None
    where = safe_url(url)
    detail = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
    missing = MISSING_TABLE.search(detail)
    if missing:
        table = missing.group(1) or missing.group(2)
        return f"the database {where} has no table {table}: run `paywall db upgrade`"
    if exc.statement is None or exc.connection_invalidated:
        # Raised while connecting: wrong host, port, name, credentials, or the server is down.
        return f"cannot connect to the database {where}: {detail}; check PAYWALL_DATABASE_URL and the server"
    if isinstance(exc, OperationalError):
        return f"the database {where} failed: {detail}"
    return None


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


class DriverStatement:
    """One SQL statement run on the database driver's own cursor: for the access check's hot path.

    There, Core's execution machinery (execution context, result metadata) costs more than the
    statements themselves: per execution on this project's benchmark machine, 100 µs of CPU on
    top of the 9 µs the state query takes on SQLite, and 150 µs on top of its 130 µs on PostgreSQL.
    This keeps the parts of it that matter. Datetime parameters and columns go through the same
    type (``UTCDateTime``) as the models; driver errors come out as SQLAlchemy's exception classes,
    so ``is_transient``, the 503 answer and ``Database.run_idempotent`` treat them as usual; and a
    connection the database dropped is invalidated. Write the SQL with ``:name`` parameters.
    """

    def __init__(
        self, sql: str, *, datetime_params: Sequence[str] = (), datetime_columns: Sequence[int] = ()
    ) -> None:
        self.sql = sql
        self.pyformat_sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
        self.datetime_params = tuple(datetime_params)
        self.datetime_columns = tuple(datetime_columns)
        # Known from the SQL, so no execution asks the cursor: psycopg builds its whole column
        # description (an object per column) when asked, which cost more than reading the rows.
        self.returns_rows = bool(re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE)) or bool(
            re.search(r"\bRETURNING\b", sql, re.IGNORECASE)
        )
        self._processors: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}

    def _processors_for(self, dialect: Dialect) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        found = self._processors.get(dialect.name)
        if found is None:
            utc = UTCDateTime().dialect_impl(dialect)  # with the dialect's own DATETIME inside
            bind = utc.bind_processor(dialect) or (lambda value: value)
            result = utc.result_processor(dialect, None) or (lambda value: value)
            found = self._processors[dialect.name] = (bind, result)
        return found

    def execute(
        self, conn: Session | Connection, params: dict[str, Any]
    ) -> tuple[Sequence[Sequence[Any]], int]:
        """(rows, rowcount); rows are plain tuples, empty for a statement that returns none.

        With a Session, on its connection, inside its transaction.
        """
        if isinstance(conn, Session):
            conn = conn.connection()
        dialect = conn.dialect
        bind, result = self._processors_for(dialect)
        values = dict(params)
        for name in self.datetime_params:
            values[name] = bind(values[name])
        sql = self.pyformat_sql if dialect.paramstyle in ("pyformat", "format") else self.sql
        proxied = conn.connection
        cursor = proxied.cursor()
        try:
            cursor.execute(sql, values)
            rows: Sequence[Sequence[Any]] = cursor.fetchall() if self.returns_rows else []
            count = cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            disconnect = dialect.is_disconnect(exc, proxied.dbapi_connection, cursor)
            if disconnect:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql,
                values,
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,  # as the engines do: no reader ids or emails in logged errors
                connection_invalidated=disconnect,
                dialect=dialect,
            ) from exc
        finally:
            if not conn.invalidated:
                cursor.close()
        if self.datetime_columns and rows:
            columns = self.datetime_columns
            converted = []
            for row in rows:
                values_ = list(row)
                for i in columns:
                    values_[i] = result(values_[i])
                converted.append(tuple(values_))
            rows = converted
        return rows, count


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
            connect_args=_pg_connect_args(self.lock_timeout_seconds, synchronous_commit=False),
        )

    def run_idempotent(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on an autocommit connection; once more on a fresh one if that one was dead.

        For the hot path, whose every statement is safe to repeat (the access check reads one
        statement and at most claims a meter slot idempotently): no BEGIN, no COMMIT and no
        pre-ping, so a check is one round trip. Instead of pinging first, a connection the database
        dropped (it restarted, or a proxy cut it) fails its first statement; then every pooled
        connection is discarded, as they went with it, and ``work`` runs again on a new one.
        """
        try:
            with self.autocommit_engine.connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        (self.autocommit_engine if self.dialect == "postgresql" else self.engine).dispose()
        with self.autocommit_engine.connect() as conn:
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
        if "autocommit_engine" in self.__dict__ and self.dialect == "postgresql":
            self.autocommit_engine.dispose()
        self.engine.dispose()
