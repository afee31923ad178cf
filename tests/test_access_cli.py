"""`paywall comp grant/revoke`."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner
from sqlalchemy import select

from paywall import clock
from paywall.cli import main
from paywall.db import Database
from paywall.models import Comp


def test_grant_and_revoke(runner: CliRunner, db: Database) -> None:
    day = (clock.now() + dt.timedelta(days=10)).date()
    result = runner.invoke(main, ["comp", "grant", "vip", "--until", day.isoformat(), "--note", "press"])
    assert result.exit_code == 0, result.output
    assert "vip: granted" in result.output
    with db.transaction() as s:
        comp = s.scalar(select(Comp))
        assert comp is not None and comp.note == "press" and comp.granted_by == "cli"
        assert comp.until == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    assert "vip: updated" in runner.invoke(main, ["comp", "grant", "vip", "--until", day.isoformat()]).output
    result = runner.invoke(main, ["comp", "revoke", "vip"])
    assert result.exit_code == 0 and "vip: revoked" in result.output
    result = runner.invoke(main, ["comp", "revoke", "vip"])
    assert result.exit_code != 0 and "no comp" in result.output


def test_grant_refuses_bad_input(runner: CliRunner, db: Database) -> None:
    assert runner.invoke(main, ["comp", "grant", "vip"]).exit_code != 0
    assert runner.invoke(main, ["comp", "grant", "vip", "--until", "31/12/2026"]).exit_code != 0
    assert runner.invoke(main, ["comp", "grant", "vip", "--until", "2001-01-01"]).exit_code != 0
    assert runner.invoke(main, ["comp", "grant", "r" * 129, "--until", "2999-01-01"]).exit_code != 0
    with db.transaction() as s:
        assert s.scalar(select(Comp)) is None
