"""The rollup: raw appeal events -> daily counts per UTC day; recent days recounted, old raw events
pruned only once counted, and the counts kept after."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select

from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.rollup import fold
from paywall.models.appeals import AppealAsk, AppealDaily, AppealEvent, AppealExposure

NOW = dt.datetime(2026, 12, 20, 9, 30, tzinfo=dt.UTC)


def at(days_ago: int, hour: int = 12) -> dt.datetime:
    day = (NOW - dt.timedelta(days=days_ago)).date()
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def add(db: Database, when: dt.datetime, type_: str = "impression", subject: str = "s1", **more: str) -> None:
    row = {
        "at": when,
        "type": type_,
        "channel": "footer",
        "experiment": "footer-copy",
        "variant": "urgent",
        "action": "",
        "subject": subject,
        "ask": secrets.token_urlsafe(16),
    }
    row.update(more)
    with db.transaction() as session:
        session.execute(insert(AppealEvent), [row])


def run(db: Database, settings: Settings, now: dt.datetime = NOW) -> tuple[tuple[dt.date, ...], int]:
    with db.transaction() as session:
        done = fold(session, settings, now)
    return done.days, done.pruned


def daily(db: Database) -> dict[tuple[dt.date, str, str, str], tuple[int, int]]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(AppealDaily)).all()
    return {(r.day, r.variant, r.type, r.action): (r.count, r.subjects) for r in rows}


def raw_count(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(AppealEvent)) or 0)


def test_counts_per_day_variant_type_and_action_with_distinct_subjects(
    db: Database, settings: Settings
) -> None:
    today, yesterday = NOW.date(), NOW.date() - dt.timedelta(days=1)
    add(db, at(0, 1), subject="a")
    add(db, at(0, 2), subject="a")
    add(db, at(0, 3), subject="b")
    add(db, at(0, 4), "click", subject="b", action="donate")
    add(db, at(0, 5), "impression", subject="c", variant="plain")
    # The first and last instant of yesterday belong to yesterday, not today.
    add(db, at(1, 0), subject="d")
    add(db, at(0, 0) - dt.timedelta(microseconds=1), subject="e")
    days, pruned = run(db, settings)
    assert days == (today - dt.timedelta(days=2), yesterday, today)
    assert pruned == 0
    assert daily(db) == {
        (today, "urgent", "impression", ""): (3, 2),
        (today, "urgent", "click", "donate"): (1, 1),
        (today, "plain", "impression", ""): (1, 1),
        (yesterday, "urgent", "impression", ""): (2, 2),
    }


def test_fold_is_idempotent_and_late_events_are_counted_at_the_next_run(
    db: Database, settings: Settings
) -> None:
    yesterday = NOW.date() - dt.timedelta(days=1)
    add(db, at(1), subject="a")
    run(db, settings)
    first = daily(db)
    run(db, settings)
    assert daily(db) == first
    # An event for yesterday that arrived after the first fold (a page left open over midnight).
    add(db, at(1, 23), subject="b")
    run(db, settings, NOW + dt.timedelta(minutes=5))
    assert daily(db)[(yesterday, "urgent", "impression", "")] == (2, 2)


def test_old_days_with_raw_events_and_no_counts_are_counted_once(db: Database, settings: Settings) -> None:
    old = NOW.date() - dt.timedelta(days=10)
    add(db, at(10), subject="a")
    days, _ = run(db, settings)
    assert old in days
    assert daily(db)[(old, "urgent", "impression", "")] == (1, 1)
    # Counted: not recounted by later runs (only the recent days are).
    add(db, at(10, 13), subject="b")
    days, _ = run(db, settings)
    assert old not in days
    assert daily(db)[(old, "urgent", "impression", "")] == (1, 1)


def test_raw_events_are_pruned_after_keep_events_days_and_their_counts_survive(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(appeal={"keep_events_days": 30})
    old, kept = NOW.date() - dt.timedelta(days=31), NOW.date() - dt.timedelta(days=30)
    add(db, at(31), subject="a")
    add(db, at(31, 20), "close", subject="a")
    add(db, at(30, 0), subject="b")  # the oldest day kept whole
    add(db, at(0), subject="c")
    days, pruned = run(db, settings)
    # The old day was counted first, in the same run, then its raw events went.
    assert old in days
    assert pruned == 2
    assert raw_count(db) == 2
    counts = daily(db)
    assert counts[(old, "urgent", "impression", "")] == (1, 1)
    assert counts[(old, "urgent", "close", "")] == (1, 1)
    assert counts[(kept, "urgent", "impression", "")] == (1, 1)
    # Later runs keep the pruned day's counts (no raw events left to recount it from).
    run(db, settings, NOW + dt.timedelta(days=1))
    assert daily(db)[(old, "urgent", "impression", "")] == (1, 1)
    assert daily(db)[(kept, "urgent", "impression", "")] == (1, 1)
    assert raw_count(db) == 1


def test_a_short_keep_never_prunes_the_days_still_recounted(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(appeal={"keep_events_days": 1})
    add(db, at(2), subject="a")
    add(db, at(3), subject="b")
    _, pruned = run(db, settings)
    assert pruned == 1  # three days ago; two days ago is still recounted, so kept
    assert daily(db)[(NOW.date() - dt.timedelta(days=2), "urgent", "impression", "")] == (1, 1)
    assert daily(db)[(NOW.date() - dt.timedelta(days=3), "urgent", "impression", "")] == (1, 1)


def test_no_events_no_counts(db: Database, settings: Settings) -> None:
    days, pruned = run(db, settings)
    assert pruned == 0
    assert len(days) == 3
    assert daily(db) == {}


def test_the_cli_folds(db: Database, runner: CliRunner) -> None:
    from paywall import clock

    add(db, clock.now(), subject="a")
    result = runner.invoke(main, ["experiments", "rollup"])
    assert result.exit_code == 0, result.output
    assert "counted days:" in result.output and "raw events pruned: 0" in result.output
    assert sum(count for count, _ in daily(db).values()) == 1


def test_the_worker_folds_and_a_failed_fold_does_not_stop_it(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paywall import clock
    from paywall.clicontext import Context
    from paywall.experiments import rollup
    from paywall.mail.cli import run_worker
    from paywall.mail.smtp import SmtpTransport

    add(db, clock.now(), subject="a")
    ctx = Context()
    ctx._settings, ctx._db = settings, db
    transport = SmtpTransport(host="127.0.0.1", port=9, security="none", backoff_seconds=0)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(ctx, stop, 0.05, transport))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not daily(db) and time.monotonic() < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    assert sum(count for count, _ in daily(db).values()) == 1

    def broken(*args: object) -> None:
        raise RuntimeError("the rollup broke")

    monkeypatch.setattr(rollup, "fold", broken)
    monkeypatch.setattr("paywall.mail.cli.ROLLUP_EVERY_SECONDS", 0.0)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(ctx, stop, 0.05, transport))
    worker.start()
    stop.wait(0.5)
    assert worker.is_alive()  # logged, and the worker goes on
    stop.set()
    worker.join(10)


def test_a_day_folded_early_is_counted_again_after_the_worker_was_down_for_days(
    db: Database, settings: Settings
) -> None:
    day = NOW.date()
    ten = dt.datetime(day.year, day.month, day.day, 10, tzinfo=dt.UTC)
    add(db, ten - dt.timedelta(hours=1), subject="a")
    run(db, settings, ten)
    assert daily(db)[(day, "urgent", "impression", "")] == (1, 1)
    # More events that day after the 10:00 fold; the worker is down until three days later.
    add(db, ten + dt.timedelta(hours=3), subject="b")
    add(db, ten + dt.timedelta(hours=4), subject="c")
    # Stamped just before the fold, stored just after it (its request was still committing).
    add(db, ten - dt.timedelta(seconds=20), subject="d")
    days, _ = run(db, settings, ten + dt.timedelta(days=3))
    assert day in days
    assert daily(db)[(day, "urgent", "impression", "")] == (4, 4)
    # Counted now: the next fold leaves that day alone (nothing newer than its fold).
    days, _ = run(db, settings, ten + dt.timedelta(days=3, minutes=5))
    assert day not in days
    assert daily(db)[(day, "urgent", "impression", "")] == (4, 4)


def exposures(db: Database) -> dict[tuple[str, str], tuple[str, str, dt.datetime]]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(AppealExposure)).all()
    return {(r.experiment, r.subject): (r.variant, r.channel, r.first_at.astimezone(dt.UTC)) for r in rows}


def test_each_reader_is_exposed_once_per_experiment_at_their_first_view(
    db: Database, settings: Settings
) -> None:
    # Reader a: views on three days (the first one 5 days ago, folded after the later ones).
    add(db, at(5, 8), "view", subject="a")
    add(db, at(1, 9), "view", subject="a")
    add(db, at(0, 7), "view", subject="a")
    add(db, at(0, 8), "view", subject="a", channel="spring-mail")
    # Reader b: an impression is no exposure; a view of the plain copy (no experiment) neither.
    add(db, at(0, 1), "impression", subject="b")
    add(db, at(0, 2), "view", subject="b", experiment="", variant="")
    # Reader c: holdback, one view a day; and the same reader in another experiment.
    add(db, at(1, 3), "view", subject="c", variant="holdback")
    add(db, at(0, 3), "view", subject="c", variant="holdback")
    add(db, at(0, 4), "view", subject="c", experiment="gate-copy", variant="short", channel="gate")
    run(db, settings)
    assert exposures(db) == {
        ("footer-copy", "a"): ("urgent", "footer", at(5, 8)),
        ("footer-copy", "c"): ("holdback", "footer", at(1, 3)),
        ("gate-copy", "c"): ("short", "gate", at(0, 4)),
    }
    # A day folded later than the reader's later days (it was never folded: an event stored
    # late) moves the reader's first view earlier, with that day's arm and channel.
    add(db, at(9, 6), "view", subject="a", channel="autumn-mail")
    run(db, settings)
    assert exposures(db)[("footer-copy", "a")] == ("urgent", "autumn-mail", at(9, 6))
    # Kept after the raw events are pruned, and refolding changes nothing.
    run(db, settings, NOW + dt.timedelta(days=60))
    assert raw_count(db) == 0
    assert len(exposures(db)) == 3


def test_asks_older_than_per_days_are_pruned(db: Database, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(appeal={"per_days": 7, "max_asks": 3})
    with db.transaction() as session:
        for days_ago in (0, 6, 7, 8, 30):
            session.add(AppealAsk(subject="r1", asked_at=NOW - dt.timedelta(days=days_ago), channel="footer"))
    run(db, settings)
    with db.transaction(readonly=True) as session:
        left = sorted(session.scalars(select(AppealAsk.asked_at)).all())
    assert [(NOW - a.astimezone(dt.UTC)).days for a in left] == [7, 6, 0]
