"""`paywall comp grant/revoke` and `paywall meter purge`."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from paywall import clock
from paywall.cli import main
from paywall.db import Database
from paywall.models import Comp, MeterRead


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


def test_meter_purge_keeps_the_recent_periods(
    runner: CliRunner, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # January, so "the month before" is in the year before.
    monkeypatch.setattr(clock, "now", lambda: dt.datetime(2027, 1, 10, 12, 0, tzinfo=dt.UTC))
    with db.transaction() as s:
        for period in ("2026-10", "2026-11", "2026-12", "2027-01"):
            s.add(MeterRead(reader="ana", period=period, article="a", slot=1, read_at=clock.now()))
            s.add(MeterRead(reader="bo", period=period, article="b", slot=1, read_at=clock.now()))
    result = runner.invoke(main, ["meter", "purge"])
    assert result.exit_code == 0, result.output
    assert "deleted 4 rows of periods before 2026-12 (kept 2026-12 to 2027-01)" in result.output
    with db.transaction() as s:
        assert sorted(set(s.scalars(select(MeterRead.period)))) == ["2026-12", "2027-01"]
    result = runner.invoke(main, ["meter", "purge", "--keep-months", "1"])
    assert "deleted 2 rows of periods before 2027-01" in result.output
    assert runner.invoke(main, ["meter", "purge", "--keep-months", "0"]).exit_code != 0
