"""Issue 18's Chromium Done-when, its second half: a click and a paid Checkout are attributed to
the right variant, in a real browser through the real pieces.

A site reader whose arm in the running footer experiment is ``urgent`` (computed with ``assign``)
opens a demo article (its own origin) carrying the access check's own token; the widget shows the
urgent copy; the reader clicks Donate, gives on /donate, pays on the hosted Checkout stand-in
(tests/support/stripe_fake.py) and lands on /thanks, which records the payment. The session Stripe
was asked for, and the payment row, name the experiment, ``urgent`` and ``footer``; the click event
names the same variant. ``PAYWALL_EVENTS_SCREENSHOTS=DIR`` keeps the screenshot of the appeal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from paywall.access.tokens import issue_access_token
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.assignment import assign
from paywall.models import CheckoutSession, Payment
from paywall.widget.settings import appeal_settings
from tests.checkout.test_sessions import PLANS
from tests.support.servers import serving
from tests.support.stripe_fake import FakeStripe
from tests.widget.test_chromium import ARGS, CHROMIUM, chromium  # noqa: F401 - the fixture
from tests.widget.test_events import EXPERIMENT
from tests.widget.test_events_chromium import URGENT, Articles, reported, shoot, wait_for

APPEAL_KEYS = ("appeal_experiment", "appeal_variant", "appeal_channel")
WANT = {"appeal_experiment": "footer-copy", "appeal_variant": "urgent", "appeal_channel": "footer"}


@pytest.fixture
def shop(make_settings: Callable[..., Settings], db: Database) -> Iterator[dict[str, Any]]:
    """The service, a demo article per reader with the access check's token, and fake Stripe."""
    placeholder = make_server("127.0.0.1", 0, lambda env, start: [], threaded=True)
    port = placeholder.server_port
    placeholder.server_close()
    service = f"http://127.0.0.1:{port}"
    box: dict[str, Settings] = {}

    def token_for(reader: str) -> str:
        with db.transaction(readonly=True) as session:
            token, _ = issue_access_token(session, box["settings"], reader)
        return token

    articles = Articles(token_for, service)
    with FakeStripe() as stripe_api:
        settings = make_settings(
            {
                "PAYWALL_STRIPE_SECRET_KEY": "sk_test_widget",
                "PAYWALL_STRIPE_API_BASE": stripe_api.url,
                "PAYWALL_PUBLIC_URL": service,
            },
            server={"allowed_origins": [articles.url]},
            plans=PLANS,
            appeal={"experiments": EXPERIMENT},
        )
        box["settings"] = settings
        app = create_app(settings, db=db)
        with serving(articles.server), serving(make_server("127.0.0.1", port, app, threaded=True)):
            yield {"settings": settings, "articles": articles.url, "service": service, "stripe": stripe_api}


def wait_for_payment(db: Database, seconds: float = 10) -> list[Payment]:
    import time

    deadline = time.monotonic() + seconds
    while True:
        with db.transaction(readonly=True) as session:
            rows = list(session.scalars(select(Payment)))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.mark.slow
def test_a_click_and_a_paid_checkout_are_attributed_to_the_readers_variant(
    chromium: None,  # noqa: F811
    shop: dict[str, Any],
    db: Database,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    settings: Settings = shop["settings"]
    stripe_api: FakeStripe = shop["stripe"]
    experiment = appeal_settings(settings).experiments["footer-copy"]
    reader = next(f"reader-{n}" for n in range(1000) if assign(experiment, f"reader-{n}").variant == "urgent")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # The reader's variant: urgent's headline, in view (so seen: view and impression).
            page.goto(f"{shop['articles']}/article/{reader}")
            region = page.get_by_role("region", name=URGENT)
            region.wait_for(state="attached")
            region.scroll_into_view_if_needed()
            assert wait_for(db, settings, reader, lambda rows: len(rows) >= 2) == [
                ("view", "", "urgent"),
                ("impression", "", "urgent"),
            ]
            shoot(page, tmp_path, "attribution-urgent-appeal.png")

            # Donate -> /donate (the link carries the ask) -> the hosted Checkout stand-in.
            page.get_by_role("link", name="Donate").click()
            page.wait_for_url(f"{shop['service']}/donate?*")
            assert "ask=" in page.url
            page.get_by_role("button", name="Donate").click()
            page.wait_for_url(f"{stripe_api.url}/checkout/*")
            (sent,) = stripe_api.posts("/v1/checkout/sessions")
            assert sent.form["client_reference_id"] == reader
            assert {k: sent.form[f"metadata[{k}]"] for k in APPEAL_KEYS} == WANT
            assert {k: sent.form[f"payment_intent_data[metadata][{k}]"] for k in APPEAL_KEYS} == WANT

            # Pay: Stripe's 303 to /thanks, which records the payment (no webhook needed).
            page.fill("#email", "ana@example.org")
            with page.expect_response(lambda r: "/thanks?" in r.url and "session_id=" in r.url) as thanks:
                page.get_by_role("button", name="Pay").click()
            assert thanks.value.status in (200, 303)
            (paid,) = wait_for_payment(db)
            assert {k: getattr(paid, k) for k in APPEAL_KEYS} == WANT
            assert paid.kind == "donation"  # amount and currency: the stand-in's fixture payment
            with db.transaction(readonly=True) as session:
                (checkout,) = session.scalars(select(CheckoutSession))
                assert {k: getattr(checkout, k) for k in APPEAL_KEYS} == WANT

            # The click was recorded for the same variant, before the page left.
            found = wait_for(db, settings, reader, lambda rows: len(rows) >= 3)
            assert found[:3] == [
                ("view", "", "urgent"),
                ("impression", "", "urgent"),
                ("click", "donate", "urgent"),
            ]
            assert reported(db, settings, reader) == found
            assert errors == []
        finally:
            browser.close()
