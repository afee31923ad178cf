"""Rate-limit counters in a SQLite file, for the ``limits`` library behind Flask-Limiter.

Every worker process of one server opens the same file, so a limit holds across the workers, with
no service to run beside the app (Redis shares counters across hosts as well). ``limits`` ships
in-memory, Redis, Memcached and MongoDB storages only; this is its documented extension point (a
``Storage`` subclass registers its URI scheme). URI: ``paywall+sqlite:///relative/path`` or
``paywall+sqlite:////absolute/path``, as SQLAlchemy spells SQLite files.

Each hit is one row; a check counts the key's rows inside the window under SQLite's write lock
(``BEGIN IMMEDIATE``), so two workers can never both take the last attempt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from limits.errors import ConfigurationError
from limits.storage import MovingWindowSupport, Storage

SCHEME = "paywall+sqlite"
# Seconds between sweeps of every key's expired rows, per process (a key's own are swept on use).
SWEEP_SECONDS = 60.0

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS hits_key_at ON hits (key, at)",
    "CREATE INDEX IF NOT EXISTS hits_expires ON hits (expires)",
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)",
)


def path_of(uri: str) -> Path:
    """The file a ``paywall+sqlite:///...`` URI names."""
    prefix = f"{SCHEME}:///"
    if not uri.startswith(prefix) or not uri[len(prefix) :]:
        raise ConfigurationError(f"expected {prefix}<path to a file>, got {uri!r}")
    return Path(uri[len(prefix) :])


class SQLiteStorage(Storage, MovingWindowSupport):
    """Counters shared by the processes of one host through a SQLite file (WAL mode)."""

    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012 (limits reads this list when the class is made)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = path_of(uri)
        self._local = threading.local()
        self._last_sweep = 0.0
        try:
            self._connect()  # fail at start, naming the file, when it cannot be written
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot use {self.path}: {exc}") from None

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread and process: a connection must not cross a fork (gunicorn
        # builds the app in the master, then forks the workers) nor be shared by threads.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # Counters need not survive a power cut; a sync per hit would cost far more than the hit.
        conn.execute("PRAGMA synchronous=OFF")
        for statement in SCHEMA:
            conn.execute(statement)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _write(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        return conn

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        if now - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = now
            conn.execute("DELETE FROM hits WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))

    # -- the moving window (what paywall's limiter uses) -----------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        conn = self._write()
        try:
            conn.execute("DELETE FROM hits WHERE key = ? AND at <= ?", (key, now - expiry))
            (count,) = conn.execute("SELECT count(*) FROM hits WHERE key = ?", (key,)).fetchone()
            taken = int(count) + amount <= limit
            if taken:
                conn.executemany(
                    "INSERT INTO hits (key, at, expires) VALUES (?, ?, ?)",
                    [(key, now, now + expiry)] * amount,
                )
            self._sweep(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return taken

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        oldest, count = (
            self._connect()
            .execute("SELECT min(at), count(*) FROM hits WHERE key = ? AND at > ?", (key, now - expiry))
            .fetchone()
        )
        return (float(oldest), int(count)) if count else (now, 0)

    # -- fixed-window counters (the base interface) -----------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        conn = self._write()
        try:
            conn.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            conn.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            (value,) = conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(value)

    def get(self, key: str) -> int:
        row = (
            self._connect()
            .execute("SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time()))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._connect().execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        try:
            self._connect().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        conn = self._write()
        try:
            removed = (
                conn.execute("DELETE FROM hits").rowcount + conn.execute("DELETE FROM counters").rowcount
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(removed)

    def clear(self, key: str) -> None:
        conn = self._write()
        try:
            conn.execute("DELETE FROM hits WHERE key = ?", (key,))
            conn.execute("DELETE FROM counters WHERE key = ?", (key,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
