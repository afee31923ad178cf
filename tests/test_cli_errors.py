"""Operators' mistakes end a command with one line saying what to fix, not a traceback:
a wrong database URL, a database not migrated yet; and the default SQLite file is the same file
whichever directory a command runs in."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from paywall import config
from paywall.cli import main
from paywall.config import load_settings
from tests.support.faults import free_port


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.output  # handled, not a crash
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not one SQLAlchemy can read; set PAYWALL_DATABASE_URL"),
        ("mysql://paywall@db.internal/paywall", "database 'mysql' is not supported"),
        (
            "postgresql+psycopg2://paywall@db.internal/paywall",
            "driver 'postgresql+psycopg2' is not available",
        ),
    ],
)
def test_wrong_database_url_prints_one_line_not_a_traceback(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("PAYWALL_DATABASE_URL", url)
    for command in (["keys", "list"], ["db", "upgrade"], ["db", "current"]):
        line = one_line_error(runner.invoke(main, command))
        assert expected in line and "postgresql+psycopg://user@host/dbname" in line


def test_unreachable_database_prints_one_line_without_the_password(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://paywall:s3cret-pw@127.0.0.1:{free_port()}/paywall"
    monkeypatch.setenv("PAYWALL_DATABASE_URL", url)
    monkeypatch.setenv("PAYWALL__DATABASE__LOCK_TIMEOUT_SECONDS", "1")
    line = one_line_error(runner.invoke(main, ["keys", "list"]))
    assert "cannot connect to the database postgresql+psycopg://paywall:***@127.0.0.1" in line
    assert "check PAYWALL_DATABASE_URL" in line and "s3cret-pw" not in line


def test_unmigrated_database_says_run_db_upgrade(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAYWALL_DATABASE_URL", f"sqlite:///{tmp_path}/new.sqlite3")
    line = one_line_error(runner.invoke(main, ["keys", "list"]))
    assert line.endswith("has no table api_keys: run `paywall db upgrade`")


def test_default_sqlite_file_does_not_depend_on_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    urls = set()
    for cwd in (config.ROOT, tmp_path):
        monkeypatch.chdir(cwd)
        urls.add(load_settings(environ={}).database.url)
    # In a checkout: var/ of the checkout, wherever the command runs.
    assert urls == {f"sqlite:///{config.ROOT / 'var' / 'paywall.sqlite3'}"}
    # Installed (no checkout around the package): the per-user data directory.
    monkeypatch.setattr(config, "IN_CHECKOUT", False)
    home = load_settings(environ={"HOME": str(tmp_path)}).database.url
    assert home == f"sqlite:///{tmp_path / '.local' / 'share' / 'paywall' / 'paywall.sqlite3'}"
    xdg = load_settings(environ={"XDG_DATA_HOME": str(tmp_path / "data")}).database.url
    assert xdg == f"sqlite:///{tmp_path / 'data' / 'paywall' / 'paywall.sqlite3'}"
