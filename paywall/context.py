"""The database and settings of the app serving the current request, typed.

Views and request hooks call these instead of reaching into ``current_app.extensions`` by string:
one place knows the keys, and callers get a ``Database``/``Settings`` rather than ``Any``.
"""

from __future__ import annotations

from flask import current_app

from paywall.config import Settings
from paywall.db import Database

DB_KEY = "paywall.db"
SETTINGS_KEY = "paywall.settings"


def current_db() -> Database:
    """The current app's database."""
    db: Database = current_app.extensions[DB_KEY]
    return db


def current_settings() -> Settings:
    """The current app's settings."""
    settings: Settings = current_app.extensions[SETTINGS_KEY]
    return settings
