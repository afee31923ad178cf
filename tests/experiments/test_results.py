"""paywall/experiments/results.py and its report: counts from appeal_daily, money kept per currency,
the route (JSON, CSV, XLSX), its CLI twin, the /reports section, and the stand-in fold."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from paywall import auth, clock
from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import Ask, encode_ask
from paywall.experiments.results import experiment_results, refresh_counts
from paywall.experiments.rollup import fold
from paywall.models.appeals import AppealDaily, AppealEvent
from tests.support.appeal_events import record_events
from tests.support.billing_rows import dispute, payment, refund, utc

NOW = utc(2026, 12, 10, 12)
EXPERIMENTS = {
    "footer-copy": {
        "holdback": 0.25,
        "start": "2026-12-01",
        "end": "2026-12-31",
        "variants": {"plain": {}, "urgent": {"headline": "We are in survival mode"}},
    },
    "later": {"start": "2027-02-01", "end": "2027-02-28", "variants": {"only": {}}},
}
TOML = """
[appeal.experiments.footer-copy]
holdback = 0.25
start = "2026-12-01"
end = "2026-12-31"
[appeal.experiments.footer-copy.variants.plain]
[appeal.experiments.footer-copy.variants.urgent]
headline = "We are in survival mode"
"""


@pytest.fixture
def xsettings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        {"PAYWALL_SESSION_SECRET": "results-session-secret"}, appeal={"experiments": EXPERIMENTS}
    )


@pytest.fixture
def xclient(xsettings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    app: Flask = create_app(xsettings, db=db)
    app.config["TESTING"] = True
    return app.test_client()


def _events(settings: Settings, db: Database, arm: str, views: int, impressions: int, clicks: int) -> None:
    at = utc(2026, 12, 5, 9)
    batch = []
    for n in range(views):
        ask = encode_ask(settings, Ask("footer", "footer-copy", arm, f" anon:{arm}-{n}", at))
        batch.append({"ask": ask, "type": "view"})
        if n < impressions:
            batch.append({"ask": ask, "type": "impression"})
        if n < clicks:
            batch.append({"ask": ask, "type": "click", "action": "donate"})
    with db.transaction() as s:
        assert record_events(s, settings, batch, at + dt.timedelta(hours=1)) == (len(batch), 0)


def _history(settings: Settings, db: Database) -> None:
    _events(settings, db, "plain", 400, 300, 12)
    _events(settings, db, "urgent", 400, 320, 20)
    _events(settings, db, "holdback", 200, 0, 0)
    when = utc(2026, 12, 5, 10)
    with db.transaction() as s:
        for amount in (1000, 2000, 3000):
            payment(
                s,
                amount_minor=amount,
                currency="eur",
                paid_at=when,
                appeal_experiment="footer-copy",
                appeal_variant="urgent",
            )
        refunded = payment(
            s,
            amount_minor=5000,
            currency="eur",
            paid_at=when,
            appeal_experiment="footer-copy",
            appeal_variant="urgent",
            refunded_minor=5000,
        )
        refund(s, refunded)
        lost = payment(
            s,
            amount_minor=4000,
            currency="eur",
            paid_at=when,
            appeal_experiment="footer-copy",
            appeal_variant="plain",
            disputed_minor=4000,
        )
        dispute(s, lost)
        payment(
            s,
            amount_minor=700,
            currency="eur",
            paid_at=when,
            appeal_experiment="footer-copy",
            appeal_variant="plain",
        )
        payment(
            s,
            amount_minor=1500,
            currency="usd",
            paid_at=when,
            appeal_experiment="footer-copy",
            appeal_variant="urgent",
        )
        payment(
            s,
            amount_minor=900,
            currency="eur",
            paid_at=when,
            appeal_experiment="footer-copy",
            appeal_variant="holdback",
            appeal_channel="direct",
        )
        # The last ask of the experiment is honoured until a day after its end; not later; nor before it.
        payment(
            s,
            amount_minor=111,
            currency="eur",
            paid_at=utc(2027, 1, 1, 20),
            appeal_experiment="footer-copy",
            appeal_variant="plain",
        )
        payment(
            s,
            amount_minor=222,
            currency="eur",
            paid_at=utc(2027, 1, 2, 1),
            appeal_experiment="footer-copy",
            appeal_variant="plain",
        )
        payment(
            s,
            amount_minor=333,
            currency="eur",
            paid_at=utc(2026, 11, 30),
            appeal_experiment="footer-copy",
            appeal_variant="plain",
        )
        # A formula in a stored variant name (metadata is text from outside): inert in CSV.
        payment(s, amount_minor=50, currency="eur", paid_at=when, appeal_experiment="footer-copy", appeal_variant="=HYPERLINK(1)")  # fmt: skip


def test_results_per_arm_and_currency(xsettings: Settings, db: Database) -> None:
    _history(xsettings, db)
    refresh_counts(db, xsettings, NOW)
    with db.transaction(readonly=True) as s:
        results = experiment_results(s, xsettings, NOW)
    assert [r.name for r in results] == ["footer-copy"]  # "later" has not started
    (result,) = results
    assert result.state == "running" and result.days == 9
    assert list(result.arms) == ["eur", "usd"]
    eur = {r.arm: r for r in result.arms["eur"]}
    assert list(eur) == ["plain", "urgent", "holdback", "=HYPERLINK(1)"]
    urgent, plain, held = eur["urgent"], eur["plain"], eur["holdback"]
    assert (urgent.counts.views, urgent.counts.impressions, urgent.counts.clicks) == (400, 320, 20)
    # Money kept: the refunded payment counts as a payment that kept nothing; so does the lost dispute.
    assert (urgent.sums.payments, urgent.sums.total) == (4, 6000)
    assert urgent.sums.squares == 1000.0**2 + 2000.0**2 + 3000.0**2
    assert (plain.sums.payments, plain.sums.total) == (3, 700 + 111)
    assert (held.sums.payments, held.sums.total, held.counts.impressions) == (1, 900, 0)
    assert urgent.click_rate is not None and urgent.click_rate.value == 20 / 320
    assert urgent.payment_rate is not None and urgent.payment_rate.value == 4 / 400
    assert urgent.per_1000_views is not None and urgent.per_1000_views.value == 6000 / 400 * 1000
    assert urgent.per_1000_impressions is not None and urgent.per_1000_impressions.value == 6000 / 320 * 1000
    assert held.per_1000_impressions is None and held.lift is None and held.p_best is None
    assert urgent.lift is not None and urgent.lift.value == pytest.approx((6000 / 400) / (900 / 200) - 1)
    assert urgent.p_best is not None and plain.p_best is not None
    assert urgent.p_best > plain.p_best
    # USD is its own result, never added to EUR.
    usd = {r.arm: r for r in result.arms["usd"]}
    assert usd["urgent"].sums.total == 1500 and usd["plain"].sums.total == 0
    assert usd["urgent"].counts.views == 400  # views are the arm's, whatever the currency
    verdict = result.verdicts["eur"]
    assert not verdict.trustworthy and "ran 9 of 7" not in verdict.why and "of 1,000 views" in verdict.why


def test_the_report_route_json_csv_xlsx(xsettings: Settings, db: Database, xclient: FlaskClient) -> None:
    _history(xsettings, db)
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="results-desk")
    headers = {"Authorization": f"Bearer {key}"}
    body = xclient.get("/v1/reports/experiments", headers=headers).get_json()
    assert body["report"] == "experiments" and len(body["trust_rule"]) == 4 and body["totals"] == []
    urgent = next(r for r in body["rows"] if r["arm"] == "urgent" and r["currency"] == "eur")
    assert urgent["views"] == 400 and urgent["revenue"] == 6000 and urgent["revenue_per_1000_views"] == 15000
    assert isinstance(urgent["revenue_per_1000_views_low"], int) and urgent["trustworthy"] is False
    assert urgent["why"].startswith("not yet:")
    only_usd = xclient.get("/v1/reports/experiments?experiment=footer-copy&currency=USD", headers=headers)
    assert {r["currency"] for r in only_usd.get_json()["rows"]} == {"usd"}
    csv = xclient.get("/v1/reports/experiments?format=csv&experiment=footer-copy", headers=headers)
    assert csv.status_code == 200
    assert 'filename="experiments-footer-copy.csv"' in csv.headers["Content-Disposition"]
    lines = csv.get_data(as_text=True).split("\r\n")
    assert lines[0].startswith("experiment,arm,currency,state,days,views,impressions,clicks,click_rate")
    urgent_line = next(line for line in lines if line.startswith("footer-copy,urgent,eur"))
    assert ",60.00," in urgent_line and ",150.00," in urgent_line  # revenue and per 1,000 views, major units
    assert any(line.startswith("footer-copy,'=HYPERLINK(1),eur") for line in lines)
    xlsx = xclient.get("/v1/reports/experiments?format=xlsx", headers=headers)
    ws = load_workbook(io.BytesIO(xlsx.get_data())).active
    assert (
        ws is not None and ws["A1"].value == "experiment" and ws.max_row == 1 + 4 + 4
    )  # four arms in EUR and in USD


def test_bad_filters_and_roles(xclient: FlaskClient, make_key: Callable[[str], dict[str, str]]) -> None:
    finance = make_key("finance")
    unknown = xclient.get("/v1/reports/experiments?experiment=nope", headers=finance)
    assert unknown.status_code == 422 and "footer-copy" in unknown.get_json()["errors"]["experiment"][0]
    bad = xclient.get("/v1/reports/experiments?experiment=Not%20A%20Name", headers=finance)
    assert bad.status_code == 422 and "experiment" in bad.get_json()["errors"]
    assert xclient.get("/v1/reports/experiments?start=2026-01-01", headers=finance).status_code == 422
    assert xclient.get("/v1/reports/experiments", headers=make_key("site")).status_code == 403
    assert xclient.get("/v1/reports/experiments").status_code == 401
    # A configured experiment that has not started: no rows yet, not an error.
    later = xclient.get("/v1/reports/experiments?experiment=later", headers=finance).get_json()
    assert later["rows"] == [] or {r["state"] for r in later["rows"]} == {"not started"}


def test_cli_twin(
    runner: CliRunner, db: Database, make_settings: Callable[..., Settings], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    config = tmp_path / "experiments.toml"
    config.write_text(TOML)
    monkeypatch.setenv("PAYWALL_CONFIG", str(config))
    monkeypatch.setattr(clock, "now", lambda: NOW)
    settings = make_settings({"PAYWALL_CONFIG": str(config)})
    _events(settings, db, "urgent", 10, 8, 1)
    with db.transaction() as s:
        payment(s, amount_minor=2500, currency="eur", paid_at=utc(2026, 12, 5, 10), appeal_experiment="footer-copy", appeal_variant="urgent")  # fmt: skip
    out = runner.invoke(main, ["report", "experiments", "--experiment", "footer-copy", "--format", "csv"])
    assert out.exit_code == 0, out.output
    urgent = next(line for line in out.output.splitlines() if line.startswith("footer-copy,urgent,eur"))
    assert ",10,8,1," in urgent and ",25.00," in urgent
    bad = runner.invoke(main, ["report", "experiments", "--experiment", "nope"])
    assert bad.exit_code == 2 and "--experiment" in bad.output and "footer-copy" in bad.output


def test_the_reports_page_section(xsettings: Settings, db: Database, xclient: FlaskClient) -> None:
    _history(xsettings, db)
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="page-desk")
    token = re.search(r'name="csrf_token" value="([^"]+)"', xclient.get("/reports").get_data(as_text=True))
    assert token
    xclient.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    html = xclient.get("/reports").get_data(as_text=True)
    assert 'id="experiments"' in html and 'data-experiment="footer-copy"' in html
    assert html.count('<svg viewBox="0 0 760 220"') == 2  # one chart per currency
    assert 'class="whisker"' in html and "<script" not in html.lower()
    assert "When to trust a result" in html and "at least 7 days" in html
    assert "/v1/reports/experiments?format=csv&amp;experiment=footer-copy" in html
    assert "=HYPERLINK(1)" in html  # escaped text on the page, not markup
    assert 'data-arm="holdback"' in html


def test_no_experiments_no_section(
    make_settings: Callable[..., Settings], db: Database, finance_key: dict[str, str]
) -> None:
    """Without [appeal.experiments] the page has no section (and folds nothing); the route has no rows."""
    app = create_app(make_settings({"PAYWALL_SESSION_SECRET": "results-session-secret"}), db=db)
    client = app.test_client()
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="plain-desk")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/reports").get_data(as_text=True))
    assert token
    client.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    html = client.get("/reports").get_data(as_text=True)
    assert "Gross and net by month" in html and 'id="experiments"' not in html
    assert client.get("/v1/reports/experiments", headers=finance_key).get_json()["rows"] == []


def test_the_stand_in_fold_is_idempotent_and_prunes(xsettings: Settings, db: Database) -> None:
    old, recent = utc(2026, 11, 1, 8), utc(2026, 12, 9, 8)
    for at in (old, recent):
        # Two page views (two asks) of one browser: two views, one subject.
        issued = (at - dt.timedelta(seconds=1), at)
        asks = [encode_ask(xsettings, Ask("footer", "footer-copy", "plain", " anon:b", i)) for i in issued]
        with db.transaction() as s:
            record_events(s, xsettings, [{"ask": a, "type": "view"} for a in asks], at)
    with db.transaction() as s:
        fold(s, xsettings, NOW)
    with db.transaction() as s:
        fold(s, xsettings, NOW)
    with db.transaction(readonly=True) as s:
        days = s.execute(
            select(AppealDaily.day, AppealDaily.count, AppealDaily.subjects).order_by(AppealDaily.day)
        ).all()
        raw = s.scalar(select(func.count()).select_from(AppealEvent))
    assert [tuple(d) for d in days] == [(dt.date(2026, 11, 1), 2, 1), (dt.date(2026, 12, 9), 2, 1)]
    assert raw == 2  # the day past keep_events_days (30) was folded, then its raw events deleted


def test_an_experiment_without_payments_yet(xsettings: Settings, db: Database, xclient: FlaskClient) -> None:
    """Views and clicks but no payment: one row per arm with an empty currency and no money figures."""
    _events(xsettings, db, "plain", 30, 20, 2)
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="early-desk")
    body = xclient.get("/v1/reports/experiments", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert [(r["arm"], r["currency"]) for r in body["rows"]] == [
        ("plain", ""),
        ("urgent", ""),
        ("holdback", ""),
    ]
    plain = body["rows"][0]
    assert (plain["views"], plain["clicks"], plain["payments"]) == (30, 2, 0)
    assert plain["revenue"] is None and plain["revenue_per_1000_views"] is None and plain["p_best"] is None
    assert plain["click_rate"] == 0.1 and plain["trustworthy"] is False
    csv = xclient.get("/v1/reports/experiments?format=csv", headers={"Authorization": f"Bearer {key}"})
    assert csv.status_code == 200 and "footer-copy,plain,,running,9,30,20,2,0.1," in csv.get_data(
        as_text=True
    )
    token = re.search(r'name="csrf_token" value="([^"]+)"', xclient.get("/reports").get_data(as_text=True))
    assert token
    xclient.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    html = xclient.get("/reports").get_data(as_text=True)
    assert "no payments yet:" in html and 'class="arms"' not in html and 'data-arm="plain"' in html
