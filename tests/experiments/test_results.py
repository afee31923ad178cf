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


def _events(
    settings: Settings, db: Database, arm: str, views: int, impressions: int, clicks: int, pages: int = 1
) -> None:
    """``views`` readers of ``arm``, each with ``pages`` views; the first ``impressions`` saw it once."""
    at = utc(2026, 12, 5, 9)
    batch: list[dict[str, str]] = []
    for n in range(views):
        # One ask per page view (the appeal answer signs one per page).
        asks = [
            encode_ask(
                settings, Ask("footer", "footer-copy", arm, f" anon:{arm}-{n}", at + dt.timedelta(seconds=p))
            )
            for p in range(pages)
        ]
        ask = asks[0]
        batch.extend({"ask": a, "type": "view"} for a in asks)
        if n < impressions:
            batch.append({"ask": ask, "type": "impression"})
        if n < clicks:
            batch.append({"ask": ask, "type": "click", "action": "donate"})
    with db.transaction() as s:
        assert record_events(s, settings, batch, at + dt.timedelta(hours=1)) == (len(batch), 0)


def _history(settings: Settings, db: Database) -> None:
    _events(settings, db, "plain", 400, 300, 12)
    _events(settings, db, "urgent", 400, 320, 20)
    # The holdback is never asked, so each of its readers reports a view on every page.
    _events(settings, db, "holdback", 200, 0, 0, pages=3)
    when = utc(2026, 12, 5, 10)
    with db.transaction() as s:
        # A subscription through the urgent appeal and its renewal: two payments, one conversion.
        for paid_at in (when, utc(2026, 12, 9, 10)):
            payment(
                s,
                amount_minor=500,
                currency="eur",
                kind="subscription",
                stripe_subscription_id="sub_urgent",
                paid_at=paid_at,
                appeal_experiment="footer-copy",
                appeal_variant="urgent",
            )
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
    # Readers, not views: the holdback's 200 readers reported 600 views.
    assert (urgent.counts.readers, held.counts.readers, held.counts.views) == (400, 200, 600)
    # Money kept: the refunded payment counts as a payment that kept nothing; so does the lost dispute.
    # The subscription's renewal is a payment and revenue, but not a second conversion.
    assert (urgent.sums.payments, urgent.sums.conversions, urgent.sums.total) == (6, 5, 7000)
    assert urgent.sums.squares == 1000.0**2 + 2000.0**2 + 3000.0**2 + 2 * 500.0**2
    assert urgent.sums.conversion_squares == 1000.0**2 + 2000.0**2 + 3000.0**2 + 1000.0**2
    assert (plain.sums.payments, plain.sums.conversions, plain.sums.total) == (3, 3, 700 + 111)
    assert (held.sums.payments, held.sums.total, held.counts.impressions) == (1, 900, 0)
    assert urgent.click_rate is not None and urgent.click_rate.value == 20 / 320
    assert urgent.payment_rate is not None and urgent.payment_rate.value == 5 / 400  # conversions / readers
    assert held.payment_rate is not None and held.payment_rate.value == 1 / 200
    assert urgent.per_reader is not None and urgent.per_reader.value == 7000 / 400
    assert urgent.per_1000_readers is not None and urgent.per_1000_readers.value == 7000 / 400 * 1000
    assert urgent.per_1000_views is not None and urgent.per_1000_views.value == 7000 / 400 * 1000
    assert urgent.per_1000_impressions is not None and urgent.per_1000_impressions.value == 7000 / 320 * 1000
    assert held.per_1000_impressions is None and held.lift is None and held.p_best is None
    # Lift per reader: per view the holdback's inflated views would make it (7000/400)/(900/600) - 1.
    assert urgent.lift is not None and urgent.lift.value == pytest.approx((7000 / 400) / (900 / 200) - 1)
    assert urgent.p_best is not None and plain.p_best is not None
    assert urgent.p_best > plain.p_best
    # USD is its own result, never added to EUR.
    usd = {r.arm: r for r in result.arms["usd"]}
    assert usd["urgent"].sums.total == 1500 and usd["plain"].sums.total == 0
    assert usd["urgent"].counts.views == 400  # views are the arm's, whatever the currency
    verdict = result.verdicts["eur"]
    assert not verdict.trustworthy and "ran 9 of 7" not in verdict.why and "of 1,000 readers" in verdict.why
    assert verdict.interim and verdict.why.startswith("interim: not yet:")  # running: an interim look
    assert "urgent has 5 of 30 conversions" in verdict.why
    # USD: no variant... urgent converted in USD, so there is a P(best); the unconverted arm gets its share.
    assert usd["urgent"].p_best is not None and usd["plain"].p_best is not None
    assert result.counted_up_to == NOW


def test_no_p_best_without_a_variant_conversion_in_the_currency(xsettings: Settings, db: Database) -> None:
    """Only the holdback paid in GBP: no variant is best there (before: the first arm got 1.0)."""
    _events(xsettings, db, "plain", 50, 40, 2)
    _events(xsettings, db, "urgent", 50, 40, 2)
    _events(xsettings, db, "holdback", 20, 0, 0)
    with db.transaction() as s:
        payment(s, amount_minor=800, currency="gbp", paid_at=utc(2026, 12, 5, 10), appeal_experiment="footer-copy", appeal_variant="holdback")  # fmt: skip
    refresh_counts(db, xsettings, NOW)
    with db.transaction(readonly=True) as s:
        (result,) = experiment_results(s, xsettings, NOW)
    gbp = {r.arm: r for r in result.arms["gbp"]}
    assert gbp["plain"].p_best is None and gbp["urgent"].p_best is None
    verdict = result.verdicts["gbp"]
    assert not verdict.trustworthy and verdict.best == "" and "no variant has a conversion" in verdict.why


def test_a_verdict_at_the_end_is_final_and_needs_less(xsettings: Settings, db: Database) -> None:
    _history(xsettings, db)
    refresh_counts(db, xsettings, NOW)
    with db.transaction(readonly=True) as s:
        (result,) = experiment_results(s, xsettings, utc(2027, 1, 5))
    assert result.state == "ended" and not result.verdicts["eur"].interim
    assert not result.verdicts["eur"].why.startswith("interim")


def test_the_report_route_json_csv_xlsx(xsettings: Settings, db: Database, xclient: FlaskClient) -> None:
    _history(xsettings, db)
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="results-desk")
    headers = {"Authorization": f"Bearer {key}"}
    # The route reads the counts as they are: nothing folded yet, so no views, and it says so.
    unfolded = xclient.get("/v1/reports/experiments", headers=headers).get_json()
    assert unfolded["counted_up_to"] is None
    assert {r["views"] for r in unfolded["rows"]} == {0} and {r["readers"] for r in unfolded["rows"]} == {0}
    with db.transaction(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(AppealDaily)) == 0  # the request folded nothing
    refresh_counts(db, xsettings, NOW - dt.timedelta(minutes=3))
    body = xclient.get("/v1/reports/experiments", headers=headers).get_json()
    assert body["counted_up_to"] == (NOW - dt.timedelta(minutes=3)).isoformat()
    assert body["report"] == "experiments" and len(body["trust_rule"]) == 5 and body["totals"] == []
    urgent = next(r for r in body["rows"] if r["arm"] == "urgent" and r["currency"] == "eur")
    assert urgent["views"] == 400 and urgent["revenue"] == 7000 and urgent["revenue_per_1000_views"] == 17500
    assert (urgent["readers"], urgent["payments"], urgent["conversions"]) == (400, 6, 5)
    assert (
        urgent["revenue_per_reader"] == 18 and urgent["revenue_per_1000_readers"] == 17500
    )  # 17.5, half to even
    held = next(r for r in body["rows"] if r["arm"] == "holdback" and r["currency"] == "eur")
    assert (held["readers"], held["views"], held["revenue_per_1000_readers"]) == (200, 600, 4500)
    assert isinstance(urgent["revenue_per_1000_views_low"], int) and urgent["trustworthy"] is False
    assert urgent["why"].startswith("interim: not yet:") and urgent["interim"] is True
    only_usd = xclient.get("/v1/reports/experiments?experiment=footer-copy&currency=USD", headers=headers)
    assert {r["currency"] for r in only_usd.get_json()["rows"]} == {"usd"}
    csv = xclient.get("/v1/reports/experiments?format=csv&experiment=footer-copy", headers=headers)
    assert csv.status_code == 200
    assert 'filename="experiments-footer-copy.csv"' in csv.headers["Content-Disposition"]
    lines = csv.get_data(as_text=True).split("\r\n")
    assert lines[0].startswith(
        "experiment,arm,currency,state,days,readers,views,impressions,clicks,click_rate"
    )
    urgent_line = next(line for line in lines if line.startswith("footer-copy,urgent,eur"))
    assert (
        ",70.00," in urgent_line and ",175.00," in urgent_line
    )  # revenue and per 1,000 readers, major units
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
    # Like the route, the report reads the counts as the last fold left them.
    assert runner.invoke(main, ["experiments", "rollup"]).exit_code == 0
    out = runner.invoke(main, ["report", "experiments", "--experiment", "footer-copy", "--format", "csv"])
    assert out.exit_code == 0, out.output
    urgent = next(line for line in out.output.splitlines() if line.startswith("footer-copy,urgent,eur"))
    assert ",10,10,8,1," in urgent and ",25.00," in urgent
    bad = runner.invoke(main, ["report", "experiments", "--experiment", "nope"])
    assert bad.exit_code == 2 and "--experiment" in bad.output and "footer-copy" in bad.output


def test_the_reports_page_section(xsettings: Settings, db: Database, xclient: FlaskClient) -> None:
    _history(xsettings, db)
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="page-desk")
    token = re.search(r'name="csrf_token" value="([^"]+)"', xclient.get("/reports").get_data(as_text=True))
    assert token
    xclient.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    assert "Not counted yet" in xclient.get("/reports").get_data(as_text=True)  # the page folds nothing
    refresh_counts(db, xsettings, utc(2026, 12, 10, 11, 55))
    html = xclient.get("/reports").get_data(as_text=True)
    assert "Counted up to 2026-12-10 11:55 UTC" in html and "paywall experiments rollup" in html
    assert 'id="experiments"' in html and 'data-experiment="footer-copy"' in html
    assert "not trustworthy yet</strong>" in html and "before the experiment's end is an interim look" in html
    assert "(interim: judged before the experiment's end, which needs P(best) of 0.99)" in html
    assert "not new conversions" in html
    assert 'class="readers">200<' in html  # the holdback's readers, not its 600 views
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
    refresh_counts(db, xsettings, NOW)
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
    assert csv.status_code == 200 and "footer-copy,plain,,running,9,30,30,20,2,0.1," in csv.get_data(
        as_text=True
    )
    token = re.search(r'name="csrf_token" value="([^"]+)"', xclient.get("/reports").get_data(as_text=True))
    assert token
    xclient.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    html = xclient.get("/reports").get_data(as_text=True)
    assert "no payments yet:" in html and 'class="arms"' not in html and 'data-arm="plain"' in html
