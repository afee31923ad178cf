"""/account in Chromium: signing in with the keyboard alone (email, then the mailed code), the page at
1280 and 390 px without sideways scrolling, and "Manage billing" reaching the Stripe portal stand-in.

Screenshots go to the test's tmp_path, and to $PAYWALL_ACCOUNT_SCREENSHOTS (a folder) when set."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Payment, Reader, Subscription
from tests.account.test_signin_views import mailed_code
from tests.checkout.test_sessions import PLANS, add_customer
from tests.support.faults import free_port
from tests.support.servers import serving
from tests.support.stripe_fake import FakeStripe

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
EMAIL = "ana@example.org"


@pytest.fixture
def live_server(
    make_settings: Callable[..., Settings], db: Database
) -> Iterator[tuple[str, FakeStripe, Settings]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakeStripe() as stripe_api:
        env = {
            "PAYWALL_PUBLIC_URL": url,
            "PAYWALL_STRIPE_SECRET_KEY": "sk_test_browser",
            "PAYWALL_STRIPE_API_BASE": stripe_api.url,
        }
        settings = make_settings(env, plans=PLANS)
        app = create_app(settings, db=db)
        server = make_server("127.0.0.1", port, app, threaded=True)
        with serving(server):
            yield url, stripe_api, settings


def _supporter(db: Database) -> None:
    add_customer(db, "ana", "cus_ana")
    now = clock.now()
    with db.transaction() as session:
        ana = session.scalar(session.query(Reader).filter_by(external_id="ana").statement)
        assert ana is not None
        ana.verified_email, ana.email_verified_at, ana.registered_at = EMAIL, now, now
        session.add(Subscription(stripe_subscription_id="sub_1", reader_id=ana.id, status="active",
                                 plan="monthly", interval="month", amount_minor=500, currency="eur",
                                 current_period_end=now + dt.timedelta(days=12)))  # fmt: skip
        for i, amount in enumerate((2500, 1000)):
            session.add(Payment(stripe_charge_id=f"ch_{i}", reader_id=ana.id, kind="donation",
                                amount_minor=amount, currency="eur",
                                paid_at=now - dt.timedelta(days=30 * i + 1)))  # fmt: skip


def _keep(shot: Path) -> None:
    target = os.environ.get("PAYWALL_ACCOUNT_SCREENSHOTS")
    if target:
        shutil.copy(shot, Path(target) / shot.name)


@pytest.mark.slow
def test_keyboard_sign_in_the_page_at_two_widths_and_the_portal(
    live_server: tuple[str, FakeStripe, Settings], db: Database, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs the chromium package)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    url, stripe_api, settings = live_server
    _supporter(db)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/account")
            # Keyboard only: Tab to the address, type, Enter; the code field has the focus next.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "email"
            page.keyboard.type(EMAIL)
            page.keyboard.press("Enter")
            page.wait_for_selector("#code")
            assert page.evaluate("document.activeElement.id") == "code"
            page.keyboard.type(mailed_code(db, settings, EMAIL))
            page.keyboard.press("Enter")
            page.wait_for_selector("text=Signed in as")
            cookie = next(c for c in context.cookies() if c["name"] == "paywall_account")
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/account"
            for width in (390, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                shot = tmp_path / f"account-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                _keep(shot)
            # Tab to "Manage billing" and press it: the Stripe portal (stand-in) opens.
            for _ in range(30):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.textContent") == "Manage billing":
                    break
            else:
                pytest.fail("Manage billing is not reachable with Tab")
            page.keyboard.press("Enter")
            page.wait_for_url(f"{stripe_api.url}/portal/*")
            assert stripe_api.posts("/v1/billing_portal/sessions")[0].form["customer"] == "cus_ana"
            assert errors == []
        finally:
            browser.close()
