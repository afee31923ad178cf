"""The database and settings of an app, typed: the one place that knows where the app keeps them.

Views and request hooks call ``current_db()``/``current_settings()``; set-up code that is handed
the app (``init_app``, gunicorn hooks, metric collectors) calls ``db_of(app)``/``settings_of(app)``.
Nobody else reaches into ``app.extensions`` by string, and callers get a ``Database``/``Settings``
rather than ``Any``.
"""

from __future__ import annotations

from flask import Flask, current_app

from paywall.config import Settings
from paywall.db import Database

DB_KEY = "paywall.db"
SETTINGS_KEY = "paywall.settings"


def db_of(app: Flask) -> Database:
    """``app``'s database."""
    db: Database = app.extensions[DB_KEY]
    return db


def settings_of(app: Flask) -> Settings:
    """``app``'s settings."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    return settings


def current_db() -> Database:
    """The current app's database."""
    return db_of(current_app)


def current_settings() -> Settings:
    """The current app's settings."""
    return settings_of(current_app)
