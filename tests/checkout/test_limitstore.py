"""Rate-limit counters shared by the workers of one server (issue 13, point 9): with the default
configuration a client gets the limit once, not once per gunicorn worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from paywall.app import create_app
from paywall.checkout.limits import SHARED_DIR_ENV, resolve_storage_uri
from paywall.checkout.limitstore import SQLiteStorage
from paywall.config import Settings
from paywall.db import Database
from tests.support.faults import gunicorn, http


def _widget_client(make_settings: Callable[..., Settings], db: Database, storage_uri: str) -> FlaskClient:
    settings = make_settings(ratelimit={"storage_uri": storage_uri, "widget_per_address": "3/minute"})
    app = create_app(settings, db=db)
    app.config["TESTING"] = True
    return app.test_client()


def test_auto_is_a_file_shared_by_gunicorns_workers_else_memory(tmp_path: Path) -> None:
    assert resolve_storage_uri("auto", {}) == "memory://"
    shared = resolve_storage_uri("auto", {SHARED_DIR_ENV: str(tmp_path)})
    assert shared == f"paywall+sqlite:///{tmp_path.resolve()}/ratelimit.sqlite3"
    assert resolve_storage_uri("redis://h:6379/0", {SHARED_DIR_ENV: str(tmp_path)}) == "redis://h:6379/0"


def test_two_processes_on_one_sqlite_file_count_together(
    make_settings: Callable[..., Settings], db: Database, tmp_path: Path
) -> None:
    """Two app instances stand for two workers: 3 widget loads a minute per address, in all."""
    uri = f"paywall+sqlite:///{tmp_path / 'ratelimit.sqlite3'}"
    worker_a = _widget_client(make_settings, db, uri)
    worker_b = _widget_client(make_settings, db, uri)
    statuses = [(worker_a if n % 2 else worker_b).get("/support/appeal").status_code for n in range(6)]
    assert statuses.count(429) == 3, statuses
    resp = worker_a.get("/support/appeal")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert resp.mimetype == "application/problem+json"


def test_sqlite_counter_never_gives_the_last_attempt_twice(tmp_path: Path) -> None:
    """Threads racing on one key take exactly the limit (BEGIN IMMEDIATE serialises the check)."""
    storage = SQLiteStorage(f"paywall+sqlite:///{tmp_path / 'rl.sqlite3'}")
    taken: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        # Each thread's own storage object, as each worker process has its own.
        own = SQLiteStorage(f"paywall+sqlite:///{tmp_path / 'rl.sqlite3'}")
        for _ in range(10):
            ok = own.acquire_entry("k", 15, 60)
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 15
    start, count = storage.get_moving_window("k", 15, 60)
    assert count == 15 and start > 0
    storage.clear("k")
    assert storage.get_moving_window("k", 15, 60)[1] == 0
    assert storage.incr("c", 60) == 1 and storage.incr("c", 60, 2) == 3 and storage.get("c") == 3
    assert storage.check() and storage.reset() is not None and storage.get("c") == 0


@pytest.mark.slow
def test_limits_hold_across_the_workers_of_one_server_by_default(tmp_path: Path) -> None:
    """gunicorn with config/gunicorn.conf.py and 3 workers, the default [ratelimit] storage: 5 widget
    loads a minute from one address are accepted in all (with per-process memory, each worker
    accepted its own 5: up to 15)."""
    env = {
        "PAYWALL_DATABASE_URL": f"sqlite:///{tmp_path / 'paywall.sqlite3'}",
        "PAYWALL__RATELIMIT__WIDGET_PER_ADDRESS": "5/minute",
    }
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    full.update(env)
    subprocess.run([sys.executable, "-m", "paywall.cli", "db", "upgrade"], env=full, cwd=tmp_path, check=True)
    with gunicorn(env, tmp_path, workers=3) as (base, _proc):
        # A new connection per request, from several threads at once, so every worker serves some.
        statuses: list[int] = []
        lock = threading.Lock()

        def load() -> None:
            for _ in range(6):
                status, _body = http("GET", base + "/support/appeal")
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=load) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(statuses) == 30 and 0 not in statuses and 500 not in statuses, statuses
    assert sum(1 for s in statuses if s != 429) == 5, statuses
