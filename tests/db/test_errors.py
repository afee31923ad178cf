"""Database errors that reach the logs never carry the statement's parameters (reader ids, emails)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from paywall.db import Database, DriverStatement

SECRET = "reader.secret@example.org"


def test_errors_from_the_engine_and_the_driver_path_hide_parameters(db: Database) -> None:
    with pytest.raises(DBAPIError) as from_engine, db.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table WHERE x = :x"), {"x": SECRET})
    with pytest.raises(DBAPIError) as from_driver, db.autocommit_engine.connect() as conn:
        DriverStatement("SELECT * FROM no_such_table WHERE x = :x").execute(conn, {"x": SECRET})
    for error in (from_engine.value, from_driver.value):
        assert "no_such_table" in str(error)  # the statement is still there to debug with
        assert SECRET not in str(error)
