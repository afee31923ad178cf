"""The /reports page: sign-in with CSRF, the signed cookie, downloads with it, and a real browser."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import insert, select
from werkzeug.serving import make_server

from paywall import auth, clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import ApiKey, CheckoutSession, Payout
from paywall.models.appeals import AppealDaily, AppealExposure
from tests.support.billing_rows import dispute, payment, refund, subscription
from tests.support.servers import serving

SECRET = "reports-test-session-secret"
CHROMIUM = "/usr/bin/chromium"


def _experiments() -> dict[str, Any]:
    """An appeal experiment running since two weeks ago (the page's experiments section)."""
    today = clock.now().date()
    return {
        "footer-copy": {
            "holdback": 0.2,
            "start": (today - dt.timedelta(days=14)).isoformat(),
            "end": (today + dt.timedelta(days=30)).isoformat(),
            "variants": {
                "plain": {"headline": "Help keep us open"},
                "urgent": {"headline": "We are in survival mode"},
                "story": {"headline": "Where your money goes"},
            },
        }
    }


@pytest.fixture
def page_app(make_settings: Callable[..., Settings], db: Database) -> Flask:
    app = create_app(
        make_settings({"PAYWALL_SESSION_SECRET": SECRET}, appeal={"experiments": _experiments()}), db=db
    )
    app.config["TESTING"] = True
    return app


_names = itertools.count(1)


def _new_key(db: Database, role: str) -> str:
    with db.transaction() as s:
        _, key = auth.create_key(s, role=role, name=f"{role}-desk-{next(_names)}")
    return key


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _sign_in(client: FlaskClient, key: str) -> int:
    token = _csrf(client.get("/reports").get_data(as_text=True))
    return client.post("/reports/sign-in", data={"key": key, "csrf_token": token}).status_code


def test_sign_in_needs_the_csrf_token(page_app: Flask, db: Database) -> None:
    client = page_app.test_client()
    key = _new_key(db, "finance")
    page = client.get("/reports")
    assert page.status_code == 200 and 'name="key"' in page.get_data(as_text=True)
    assert client.post("/reports/sign-in", data={"key": key}).status_code == 400
    assert client.post("/reports/sign-in", data={"key": key, "csrf_token": "forged"}).status_code == 400
    # Another browser's token is worth nothing here.
    other = page_app.test_client()
    stolen = _csrf(other.get("/reports").get_data(as_text=True))
    assert client.post("/reports/sign-in", data={"key": key, "csrf_token": stolen}).status_code == 400


def test_sign_in_sets_a_safe_cookie_and_downloads_use_it(page_app: Flask, db: Database) -> None:
    client = page_app.test_client()
    with db.transaction() as s:
        payment(s, amount_minor=1234, paid_at=clock.now() - dt.timedelta(days=1))
    assert client.get("/v1/reports/revenue?start=2020-01-01&end=2030-01-01").status_code == 401
    token = _csrf(client.get("/reports").get_data(as_text=True))
    resp = client.post("/reports/sign-in", data={"key": _new_key(db, "finance"), "csrf_token": token})
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie and "Path=/" in cookie
    page = client.get("/reports")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html and 'id="subscribers"' in html
    assert "<script" not in html.lower()
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    csv = client.get("/v1/reports/revenue?start=2020-01-01&end=2030-01-01&format=csv")
    assert csv.status_code == 200 and "12.34" in csv.get_data(as_text=True)
    # The CSS comes from this blueprint (CSP: 'self' only).
    assert client.get("/reports/static/reports.css").status_code == 200
    # Sign out (with the token) ends it.
    client.post("/reports/sign-out", data={"csrf_token": _csrf(html)})
    assert client.get("/v1/reports/revenue?start=2020-01-01&end=2030-01-01").status_code == 401


def test_site_keys_and_bad_keys_are_refused(page_app: Flask, db: Database) -> None:
    client = page_app.test_client()
    assert _sign_in(client, _new_key(db, "site")) == 403
    assert _sign_in(client, "pw_nope_nope") == 401
    assert _sign_in(client, _new_key(db, "admin")) == 303


def test_signing_out_ends_the_session_on_the_server(page_app: Flask, db: Database) -> None:
    """Issue 13, point 11: a copy of the cookie taken before sign-out must not work after it."""
    client = page_app.test_client()
    assert _sign_in(client, _new_key(db, "finance")) == 303
    cookie = client.get_cookie("paywall_reports")
    assert cookie is not None
    copied = page_app.test_client()
    copied.set_cookie("paywall_reports", cookie.value)
    revenue = "/v1/reports/revenue?start=2020-01-01&end=2030-01-01"
    assert copied.get(revenue).status_code == 200  # the copy works while the session lives
    html = client.get("/reports").get_data(as_text=True)
    assert client.post("/reports/sign-out", data={"csrf_token": _csrf(html)}).status_code == 303
    assert copied.get(revenue).status_code == 401
    assert 'name="key"' in copied.get("/reports").get_data(as_text=True)  # the sign-in form again


def test_failed_sign_ins_are_throttled_per_address(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    """Issue 13, point 11: wrong keys on the /reports sign-in are limited per client address."""
    settings = make_settings(
        {"PAYWALL_SESSION_SECRET": SECRET}, ratelimit={"auth_failures_per_address": "3/minute"}
    )
    app = create_app(settings, db=db)
    app.config["TESTING"] = True
    client = app.test_client()
    good = _new_key(db, "finance")
    assert [_sign_in(client, f"pw_{n:016x}_wrong") for n in range(3)] == [401, 401, 401]
    token = _csrf(client.get("/reports").get_data(as_text=True))
    resp = client.post("/reports/sign-in", data={"key": good, "csrf_token": token})
    assert resp.status_code == 429  # not even the right key is checked now
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in resp.get_data(as_text=True)
    # The same key over the API, from the same address: throttled too.
    revenue = "/v1/reports/revenue?start=2020-01-01&end=2030-01-01"
    assert client.get(revenue, headers={"Authorization": f"Bearer {good}"}).status_code == 429
    # Another address is not held up.
    other = client.post(
        "/reports/sign-in", data={"key": good, "csrf_token": token}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert other.status_code == 303


def test_revoking_the_key_ends_the_sign_in(page_app: Flask, db: Database) -> None:
    client = page_app.test_client()
    key = _new_key(db, "finance")
    assert _sign_in(client, key) == 303
    assert client.get("/v1/reports/donors?year=2026").status_code == 200
    with db.transaction() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_id == key.split("_")[1]))
        assert row is not None
        auth.revoke_key(s, row.name)
    assert client.get("/v1/reports/donors?year=2026").status_code == 401
    assert 'name="key"' in client.get("/reports").get_data(as_text=True)


def test_tampered_cookie_is_ignored(page_app: Flask, db: Database) -> None:
    client = page_app.test_client()
    assert _sign_in(client, _new_key(db, "finance")) == 303
    client.set_cookie("paywall_reports", "eyJraWQiOiJ4In0.forged.sig")
    assert client.get("/v1/reports/donors?year=2026").status_code == 401


def test_missing_secret_in_production_is_503(client: FlaskClient) -> None:
    resp = client.get("/reports")
    assert resp.status_code == 503
    assert "PAYWALL_SESSION_SECRET" in resp.get_json()["detail"]


def test_development_secret_is_generated_once(
    make_settings: Callable[..., Settings],
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make_settings({"PAYWALL_PUBLIC_URL": "http://127.0.0.1:8000"})
    create_app(settings, db=db)
    secret_file = tmp_path / "var" / "session-secret"
    first = secret_file.read_text()
    assert len(first) > 40 and (secret_file.stat().st_mode & 0o777) == 0o600
    assert "generated a development session secret" in caplog.text
    app = create_app(settings, db=db)
    assert secret_file.read_text() == first
    client = app.test_client()
    assert _sign_in(client, _new_key(db, "finance")) == 303
    assert "Secure" not in client.get("/reports").headers.get("Set-Cookie", "")


def _chart_history(db: Database) -> None:
    """A year of payments in two currencies, with refunds, a dispute and subscribers."""
    now = clock.now()
    with db.transaction() as s:
        for month in range(12):
            when = now - dt.timedelta(days=30 * month + 1)
            for i in range(3 + month % 4):
                p = payment(
                    s,
                    amount_minor=2500 + 700 * i + 150 * month,
                    fee_minor=103 + 20 * i,
                    paid_at=when,
                    email=f"d{i}@example.org",
                )
                if i == 1 and month % 3 == 0:
                    refund(s, p, amount_minor=1000, stripe_created=when + dt.timedelta(hours=1))
            payment(
                s,
                amount_minor=900 + 100 * (month % 5),
                currency="eur",
                kind="subscription",
                plan="monthly",
                fee_minor=40,
                paid_at=when,
            )
        d = payment(s, amount_minor=5000, fee_minor=175, paid_at=now - dt.timedelta(days=70))
        dispute(s, d, opened_at=now - dt.timedelta(days=65))
        for i in range(7):
            subscription(s, started_at=now - dt.timedelta(days=40 + i))
        for i, (campaign, mode, amount) in enumerate(
            [
                ("spring-appeal", "payment", 5000),
                ("spring-appeal", "subscription", 1500),
                (None, "payment", 2500),
            ]
        ):
            s.add(
                CheckoutSession(
                    stripe_checkout_session_id=f"cs_test_page_{i}",
                    mode=mode,
                    status="complete",
                    kind="subscription" if mode == "subscription" else "donation",
                    campaign=campaign,
                    amount_total=amount,
                    currency="usd",
                    completed_at=now - dt.timedelta(days=20 + i),
                )
            )
        # A payout in each currency (their transactions are not listed yet: no difference).
        for i, (currency, amount) in enumerate([("usd", 41_250), ("eur", 8_900)]):
            s.add(
                Payout(
                    stripe_payout_id=f"po_test_page_{i}",
                    amount_minor=amount,
                    currency=currency,
                    status="paid",
                    reconciliation_status="completed",
                    automatic=True,
                    arrival_date=now - dt.timedelta(days=10 + i),
                    livemode=False,
                )
            )


def _experiment_history(db: Database) -> None:
    """Two weeks of the footer-copy experiment: daily counts (a day the fold has done) and payments
    credited to each arm, in EUR (enough to trust) and a few in USD (not yet)."""
    now = clock.now()
    day = (now - dt.timedelta(days=5)).date()
    arms = {  # views, impressions, clicks, EUR payments, mean gift
        "plain": (9000, 7200, 290, 45, 900),
        "urgent": (9100, 7300, 440, 84, 1300),
        "story": (8900, 7100, 360, 52, 1000),
        "holdback": (6800, 0, 0, 12, 1000),
    }
    with db.transaction() as s:
        for arm, (views, impressions, clicks, paid, gift) in arms.items():
            for type_, count, action in (
                ("view", views, ""),
                ("impression", impressions, ""),
                ("click", clicks, "donate"),
            ):
                if count:
                    s.add(AppealDaily(day=day, experiment="footer-copy", variant=arm, channel="footer", type=type_, action=action, count=count, subjects=count // 3))  # fmt: skip
            # The readers (first exposures) behind those views: three views each.
            s.execute(insert(AppealExposure), [{"experiment": "footer-copy", "subject": f"{arm}-{n}", "variant": arm, "channel": "footer", "first_at": now - dt.timedelta(days=5)} for n in range(views // 3)])  # fmt: skip
            for i in range(paid):
                amount = gift // 2 + (i * 7919) % gift  # a spread of gifts around the mean
                payment(s, amount_minor=amount, currency="eur", paid_at=now - dt.timedelta(days=1 + i % 12), appeal_experiment="footer-copy", appeal_variant=arm, appeal_channel="direct" if arm == "holdback" else "footer")  # fmt: skip
            for i in range(paid // 10):
                payment(s, amount_minor=1500 + 500 * i, currency="usd", paid_at=now - dt.timedelta(days=2), appeal_experiment="footer-copy", appeal_variant=arm)  # fmt: skip


def _experiment_section(page: Any, tmp_path: Path) -> None:
    """The experiments section: a chart per currency with whiskers, the verdict, the rule, a CSV."""
    section = page.locator("#experiments")
    assert section.locator("svg[data-experiment=footer-copy]").count() == 2
    eur = section.locator("svg[data-experiment=footer-copy][data-currency=EUR]")
    assert eur.locator("rect").count() == 4 and eur.locator("rect.best").count() == 1
    assert eur.locator("g.whisker").count() == 4
    verdict = section.locator(".experiment-currency[data-currency=EUR] .verdict").inner_text()
    assert "trustworthy" in verdict and "urgent is best" in verdict and "not" not in verdict
    usd = section.locator(".experiment-currency[data-currency=USD] .verdict").inner_text()
    assert "not trustworthy yet" in usd
    assert section.locator("#trust-rule li").count() == 5
    with page.expect_download() as info:
        section.locator("a.dl-experiment[data-format=csv]").click()
    download = info.value
    assert download.suggested_filename == "experiments-footer-copy.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("experiment,arm,currency,")
    assert [line.split(",")[1] for line in lines[1:5]] == ["plain", "urgent", "story", "holdback"]


# The first column of the reports that have no grouping (a grouped one is headed by its grouping).
FIRST_COLUMNS = {"payments": "paid_at", "donors": "email", "campaigns": "campaign", "payouts": "payout"}
FILE_NAME = re.compile(
    r"(?P<report>[a-z]+)(-by-(?P<group>[a-z]+))?(-(?P<filters>[a-z]+(-[a-z]+)?))?"
    r"-(?P<period>\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}|\d{4})\.(?P<ext>csv|xlsx)"
)


def _first_column(path: Path) -> str:
    if path.suffix == ".csv":
        return path.read_text(encoding="utf-8").split("\r\n", 1)[0].split(",")[0]
    ws = load_workbook(path).active
    assert ws is not None
    return str(ws["A1"].value)


def _download_every_link(page: Any, tmp_path: Path) -> None:
    """Every CSV and XLSX link the page offers: a name saying report, grouping and period, and a
    first column headed by the grouping (never ``period``). Taken from the page, so a report
    added to it is covered too."""
    links = page.locator("a.dl[data-format=csv], a.dl[data-format=xlsx]")
    count = links.count()
    assert count >= 2 * 15
    seen = set()
    for i in range(count):
        link = links.nth(i)
        query = parse_qs(urlsplit(link.get_attribute("href")).query)
        report = urlsplit(link.get_attribute("href")).path.rsplit("/", 1)[-1]
        with page.expect_download() as info:
            link.click()
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        named = FILE_NAME.fullmatch(saved.name)
        assert named, saved.name
        assert named["report"] == report and named["ext"] == query["format"][0]
        assert named["period"] == (
            query["year"][0] if "year" in query else f"{query['start'][0]}_{query['end'][0]}"
        )
        group = query.get("group_by", [None])[0]
        assert named["group"] == group
        first = _first_column(saved)
        assert first == (group or FIRST_COLUMNS.get(report, first)) and first != "period", (saved.name, first)
        seen.add((report, group))
    assert {r for r, _ in seen} >= {"revenue", "subscriptions", "payments", "donors", "campaigns", "payouts"}
    assert ("revenue", "plan") in seen and ("revenue", "campaign") in seen


def _download_from_a_form(page: Any, tmp_path: Path) -> None:
    """Any report for a chosen period, one currency and one kind; payouts for one currency."""
    form = page.locator("form[data-report=payments]")
    form.locator("input[name=start]").fill("2026-01-01")
    form.locator("input[name=end]").fill("2026-02-01")
    form.locator("input[name=currency]").fill("usd")
    form.locator("select[name=kind]").select_option("donation")
    with page.expect_download() as info:
        form.locator("button[value=xlsx]").click()
    download = info.value
    assert download.suggested_filename == "payments-usd-donation-2026-01-01_2026-02-01.xlsx"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert _first_column(saved) == "paid_at"
    # Payouts: a period and a currency, and no kind (a payout pays out both kinds together).
    form = page.locator("form[data-report=payouts]")
    assert form.locator("select[name=kind]").count() == 0
    form.locator("input[name=currency]").fill("EUR")
    with page.expect_download() as info:
        form.locator("button[value=csv]").click()
    download = info.value
    start, end = (
        form.locator("input[name=start]").input_value(),
        form.locator("input[name=end]").input_value(),
    )
    assert download.suggested_filename == f"payouts-eur-{start}_{end}.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",")[0] == "payout"
    assert [line.split(",")[0] for line in lines[1:]] == ["po_test_page_1", "total"]


@pytest.fixture
def live_server(page_app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, page_app, threaded=True)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.mark.slow
def test_browser_signs_in_sees_the_chart_and_downloads(
    live_server: str, db: Database, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs the chromium package)")
        print(f"skipping the browser test: {CHROMIUM} is not installed (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    _chart_history(db)
    _experiment_history(db)
    key = _new_key(db, "finance")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        try:
            context = browser.new_context(viewport={"width": 1040, "height": 1100}, accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{live_server}/reports")
            page.fill("#key", key)
            page.click("button[type=submit]")
            page.wait_for_selector("svg[data-currency=USD]")
            assert page.locator("svg[data-currency=USD] rect.gross").count() == 12
            assert page.locator("svg[data-currency=EUR] rect.net").count() == 12
            assert page.inner_text("#subscribers") == "7"
            campaigns = page.locator("#campaigns tr").all_inner_texts()
            assert [c.split()[0] for c in campaigns[1:]] == ["spring-appeal", "(none)"]
            assert campaigns[1].split()[-3:] == ["65.00", "32.50", "50%"]
            cookies = {c["name"]: c for c in context.cookies()}
            assert cookies["paywall_reports"]["httpOnly"] is True
            _experiment_section(page, tmp_path)
            _download_every_link(page, tmp_path)
            _download_from_a_form(page, tmp_path)
            shot = tmp_path / "reports.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            target = os.environ.get("PAYWALL_REPORTS_SCREENSHOT")
            if target:
                shutil.copy(shot, target)
            assert errors == []
        finally:
            browser.close()
