"""Start-up checks: every settings section is checked before anything runs, /readyz waits for the
migrations, what will not work is said once, and an https service needs PAYWALL_SIGNING_KEY."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from paywall.app import create_app, log_missing_settings
from paywall.cli import main, upgrade_database
from paywall.config import ConfigError, Settings, load_settings
from paywall.db import Database
from paywall.sections import SECTIONS
from paywall.signing import parse_pem_keys
from tests.checkout.test_sessions import PLANS

# (TOML override, what the one-line error must name): a typo, a wrong type, a bad value, per section.
BAD_SETTINGS = [
    ("[access]\nfree_articles_per_mont = 5\n", "free_articles_per_mont"),
    ('[access]\ngrace_period_days = "seven"\n', "access.grace_period_days"),
    ('[reports]\ntimezone = "Europe/Pariss"\n', "reports.timezone"),
    ('[reports]\nlivemode = "sometimes"\n', "reports.livemode"),
    ('[donations]\ndefault_currency = "chf"\n', "donations.default_currency"),
    ("[donations.limits.eur]\nmin = 500\nmax = 100\n", "donations.limits.eur"),
    ('[checkout]\nsite_ulr = "https://news.example.org"\n', "site_ulr"),
    ('[appeal]\nheadline = ["Help"]\n', "appeal.headline"),
    ('[mailer]\nreceipts_timezone = "Mars/Olympus"\n', "mailer.receipts_timezone"),
    (
        '[plans.gold]\nprice = "price_gold"\nlabel = "Gold"\ninterval = "week"\namount = 900\ncurrency = "eur"\n',
        "plans.gold.interval",
    ),
    ("[acess]\nfree_articles_per_month = 5\n", "[acess]"),
    ('[logging]\nlevel = "LOUD"\n', "logging.level"),
    ('[server]\nallowed_origins = ["news.example.org"]\n', "server.allowed_origins"),
]


def _bad_file(tmp_path: Path, toml: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(toml)
    return str(path)


@pytest.mark.parametrize(("toml", "key"), BAD_SETTINGS)
def test_settings_are_checked_at_start(
    toml: str, key: str, tmp_path: Path, make_settings: Callable[..., Settings], db: Database
) -> None:
    """Before, only the core sections were checked at start: the app came up (healthz 200) and
    every request that read the bad section answered 500."""
    settings = make_settings({"PAYWALL_CONFIG": _bad_file(tmp_path, toml)})
    with pytest.raises(ConfigError) as caught:
        create_app(settings, db=db)
    assert key in str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_are_checked_at_start_from_the_environment(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    for env, key in (
        ({"PAYWALL_PUBLIC_URL": "https://paywall.example.org:https"}, "server.public_url"),
        ({"PAYWALL_BIND": "8000"}, "server.bind"),
        ({"PAYWALL__REPORTS__SESSION_HOURS": "eight"}, "reports.session_hours"),
        ({"PAYWALL__ACESS__DISMISS_DAYS": "3"}, "[acess]"),
    ):
        with pytest.raises(ConfigError, match=re.escape(key)):
            create_app(make_settings(env), db=db)


# Every section, core and feature, and the tables inside one: a misspelt key is named at start.
MISSPELT_KEYS = [
    *(
        (f"[{name}]\nnot_a_key = 1\n", f"[{name}] has unknown key(s): not_a_key")
        for name in SECTIONS
        if name != "plans"
    ),
    ("[plans.monthly]\nprise = 1\n", "[plans.monthly] has unknown key(s): prise"),
    ("[donations.limits.eur]\nmaxx = 1\n", "[donations.limits.eur] has unknown key(s): maxx"),
    (
        '[plans.gold]\nprice = "price_gold"\n',
        "[plans.gold] is missing key(s): label, interval, amount, currency",
    ),
    ('[donations]\ncurrencies = ["eur", "chf"]\n', "donations.limits.chf"),
    ("[mailer]\nclaim_batch = 0\n", "mailer.claim_batch"),
    ('[ratelimit]\nwidget_per_address = "lots"\n', "ratelimit.widget_per_address"),
    ("[database]\npool_size = 0\n", "database.pool_size"),
]


@pytest.mark.parametrize(("toml", "message"), MISSPELT_KEYS)
def test_every_section_is_checked_at_start(
    toml: str, message: str, tmp_path: Path, make_settings: Callable[..., Settings], db: Database
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings({"PAYWALL_CONFIG": _bad_file(tmp_path, toml)}), db=db)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("toml", "key"), BAD_SETTINGS[:3] + BAD_SETTINGS[-3:-2])
def test_settings_are_checked_at_start_by_paywall_serve(
    toml: str, key: str, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr("paywall.cli.os.execv", lambda *args: started.append(args))
    monkeypatch.setenv("PAYWALL_CONFIG", _bad_file(tmp_path, toml))
    result = runner.invoke(main, ["serve"])
    assert result.exit_code == 1
    assert started == []  # gunicorn never started
    (line,) = result.output.splitlines()
    assert line.startswith("Error: configuration: ") and key in line


@pytest.mark.slow
def test_settings_are_checked_at_start_one_line_without_traceback(tmp_path: Path) -> None:
    """`paywall serve` (what `make run` ends with) as a real process: one line, exit 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    env["PAYWALL_CONFIG"] = _bad_file(tmp_path, BAD_SETTINGS[0][0])
    env["PAYWALL_DATABASE_URL"] = f"sqlite:///{tmp_path}/never.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-m", "paywall.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "Error: configuration: [access] has unknown key(s): free_articles_per_mont"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_readyz_is_not_ready_on_an_unmigrated_database(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    database = Database(url)
    try:
        app = create_app(make_settings({"PAYWALL_DATABASE_URL": url}), db=database)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        resp = client.get("/readyz")
        assert (resp.status_code, resp.get_json()) == (
            503,
            {"status": "unavailable", "database": "unmigrated"},
        )
        upgrade_database(url, "0003")  # one branch behind the others
        assert client.get("/readyz").status_code == 503
        upgrade_database(url)
        resp = client.get("/readyz")
        assert (resp.status_code, resp.get_json()) == (
            200,
            {
                "status": "ok",
                "database": "ok",
                "stripe_sync": "ok",
                "waiting": 0,
                "oldest_waiting_seconds": 0.0,
            },
        )
    finally:
        database.dispose()


def test_readyz_stays_ready_while_newer_code_migrates_ahead(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Migrations are additive: old code keeps serving while a newer release's migration applies."""
    url = f"sqlite:///{tmp_path}/ahead.sqlite3"
    upgrade_database(url)
    database = Database(url)
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('9999')")
        app = create_app(make_settings({"PAYWALL_DATABASE_URL": url}), db=database)
        assert app.test_client().get("/readyz").status_code == 200
    finally:
        database.dispose()


def test_https_public_url_without_signing_key_refuses_to_start(
    make_settings: Callable[..., Settings], db: Database, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsigned = make_settings({"PAYWALL_SIGNING_KEY": ""})
    assert unsigned.server.public_url.startswith("https://")
    with pytest.raises(ConfigError, match=r"PAYWALL_SIGNING_KEY is not set.*`paywall keys signing-key`"):
        create_app(unsigned, db=db)
    # Over plain http (development) a key generated on disk is allowed, with a warning.
    create_app(
        make_settings({"PAYWALL_SIGNING_KEY": "", "PAYWALL_PUBLIC_URL": "http://127.0.0.1:8000"}), db=db
    )

    started: list[Any] = []
    monkeypatch.setattr("paywall.cli.os.execv", lambda *args: started.append(args))
    monkeypatch.setenv("PAYWALL_PUBLIC_URL", "https://paywall.example.org")
    monkeypatch.delenv("PAYWALL_SIGNING_KEY", raising=False)
    result = runner.invoke(main, ["serve"])
    assert result.exit_code == 1 and started == []
    assert "PAYWALL_SIGNING_KEY is not set" in result.output
    # The other commands that sign links refuse too, before sending anything.
    for words in (["worker"], ["appeals", "send", "keep-us-open"]):
        result = runner.invoke(main, words)
        assert result.exit_code == 1 and "PAYWALL_SIGNING_KEY is not set" in result.output, (
            words,
            result.output,
        )


def test_signing_key_command_prints_a_new_key(runner: CliRunner) -> None:
    first = runner.invoke(main, ["keys", "signing-key"])
    second = runner.invoke(main, ["keys", "signing-key"])
    assert first.exit_code == 0 and second.exit_code == 0
    (key,) = parse_pem_keys(first.output)
    (other,) = parse_pem_keys(second.output)
    assert key.kid != other.kid


def _warnings(settings: Settings, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="paywall"):
        log_missing_settings(settings)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("will not work: ")]


def test_startup_says_what_will_not_work(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={"PAYWALL_BIND": "0.0.0.0:8000"})
    said = _warnings(settings, caplog)
    assert len(said) == 4
    public, origins, key, plan = said
    assert "PAYWALL_PUBLIC_URL" in public and "http://127.0.0.1:8000" in public and "0.0.0.0:8000" in public
    assert "PAYWALL_ALLOWED_ORIGINS" in origins and "widget shows nothing" in origins
    assert "PAYWALL_SIGNING_KEY" in key and "redeploy" in key and "paywall keys signing-key" in key
    assert "plans.monthly.price" in plan and "not offered" in plan


def test_startup_says_nothing_when_all_is_set(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        environ={
            "PAYWALL_BIND": "0.0.0.0:8000",
            "PAYWALL_PUBLIC_URL": "https://paywall.example.org",
            "PAYWALL_ALLOWED_ORIGINS": "https://news.example.org",
            "PAYWALL_SIGNING_KEY": "set",
        },
        overrides={"plans": PLANS},
    )
    assert _warnings(settings, caplog) == []
    # Development as shipped: listening where the default public URL points is fine.
    assert not any("PAYWALL_PUBLIC_URL" in w for w in _warnings(load_settings(environ={}), caplog))
