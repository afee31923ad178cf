"""The database: models' base and types, engines and transactions, error meanings, dialect SQL.

The names most modules need are re-exported here (``from paywall.db import Base, Database``); each
lives in the module named for what it does.
"""

from paywall.db.driver import DriverStatement
from paywall.db.engine import Database, make_engine
from paywall.db.errors import (
    DatabaseURLError,
    TransientDatabaseError,
    check_url,
    describe_error,
    is_transient,
    safe_url,
)
from paywall.db.schema import Base, UTCDateTime
from paywall.db.statements import dialect_insert, insert_ignore

__all__ = [
    "Base",
    "Database",
    "DatabaseURLError",
    "DriverStatement",
    "TransientDatabaseError",
    "UTCDateTime",
    "check_url",
    "describe_error",
    "dialect_insert",
    "insert_ignore",
    "is_transient",
    "make_engine",
    "safe_url",
]
