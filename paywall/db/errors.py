"""What a database error means: worth retrying (transient), or a URL, connection or schema problem
to tell an operator about in one line."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError


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
