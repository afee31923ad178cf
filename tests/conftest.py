"""Fixtures: a migrated database (SQLite, or PostgreSQL when PAYWALL_TEST_DATABASE_URL is set),
the app, its client and CLI runner, and API keys per role."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from paywall import auth
from paywall.app import create_app
from paywall.cli import upgrade_database
from paywall.config import Settings, load_settings
from paywall.db import Base, Database
from paywall.signing import generate_pem

# Hypothesis: no per-example deadline (a shared 2-core machine varies too much to time examples),
# and in CI the same examples every run, so a red build is reproducible and a green one is stable.
hypothesis_settings.register_profile("paywall", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "paywall")

# ../shared beside the checkout; a git worktree one level deeper (/work/wt/NAME) finds it further up.
FIXTURES = next(
    (
        up / "shared" / "fixtures" / "stripe"
        for up in Path(__file__).resolve().parents[1:]
        if (up / "shared" / "fixtures" / "stripe").is_dir()
    ),
    Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "stripe",
)
WEBHOOK_SECRET = "whsec_test_secret"
# One signing key for the run, so no test writes a development key under var/.
SIGNING_KEY = generate_pem()


def pytest_report_header() -> str:
    url = os.environ.get("PAYWALL_TEST_DATABASE_URL")
    return f"paywall database: {'PostgreSQL ' + url.rsplit('/', 1)[-1] if url else 'SQLite (temporary file)'}"


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("PAYWALL_TEST_DATABASE_URL")
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    if not url:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'paywall.sqlite3'}"
    elif worker is None:
        yield url
    else:
        # Under pytest-xdist each worker gets a PostgreSQL database of its own (NAME_gw0, ...): on
        # one shared database each worker dropped the schema and truncated the tables under the
        # others (deadlocks, missing relations). Tests that read the variable get their worker's.
        own = f"{url.rsplit('/', 1)[0]}/{url.rsplit('/', 1)[1]}_{worker}"
        _recreate_database(url, own, create=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PAYWALL_TEST_DATABASE_URL", own)
            yield own
        _recreate_database(url, own, create=False)


def _recreate_database(admin_url: str, url: str, *, create: bool) -> None:
    name = url.rsplit("/", 1)[1]
    admin = Database(admin_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    """The test database, migrated to head once per run."""
    if os.environ.get("PAYWALL_TEST_DATABASE_URL"):
        # Start from nothing on a reused PostgreSQL database.
        db = Database(database_url)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        db.dispose()
    upgrade_database(database_url)
    return database_url


def truncate_all(db: Database) -> None:
    with db.engine.begin() as conn:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if db.dialect == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def db(migrated: str) -> Iterator[Database]:
    """A clean, migrated database; every table is emptied after the test."""
    database = Database(migrated)
    truncate_all(database)
    try:
        yield database
    finally:
        truncate_all(database)
        database.dispose()


@pytest.fixture
def make_settings(migrated: str) -> Callable[..., Settings]:
    """Settings from an explicit environment (never the developer's own), plus TOML-like overrides."""

    def make(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = {
            "PAYWALL_DATABASE_URL": migrated,
            "PAYWALL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PAYWALL_PUBLIC_URL": "https://paywall.example.org",
            "PAYWALL_SIGNING_KEY": SIGNING_KEY,
        }
        environ.update(env or {})
        return load_settings(environ=environ, overrides=overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings, db: Database) -> Flask:
    app = create_app(settings, db=db)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, migrated: str) -> CliRunner:
    """A CLI runner whose commands use the test database.

    click's CliRunner rather than ``app.test_cli_runner()``: ``paywall`` is a plain click group that
    builds its settings from the environment at start, as in production, not the Flask app's
    ``app.cli``; a Flask runner would hand it an app it never reads. Every test that runs a
    command in-process takes this fixture."""
    monkeypatch.setenv("PAYWALL_DATABASE_URL", migrated)
    monkeypatch.delenv("PAYWALL_CONFIG", raising=False)
    return CliRunner()


@pytest.fixture
def make_key(db: Database) -> Callable[[str], dict[str, str]]:
    """Create a key for a role; returns the Authorization header for it."""
    counter = iter(range(1_000_000))

    def make(role: str) -> dict[str, str]:
        with db.transaction() as session:
            _, key = auth.create_key(session, role=role, name=f"{role}-{next(counter)}")
        return {"Authorization": f"Bearer {key}"}

    return make


@pytest.fixture
def site_key(make_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_key("site")


@pytest.fixture
def finance_key(make_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_key("finance")


@pytest.fixture
def admin_key(make_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_key("admin")
