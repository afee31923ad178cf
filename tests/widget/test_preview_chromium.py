"""The staff preview page (GET /support/preview) in headless Chromium: without a preview link it
loads no widget (no meter read, no appeal request, no event); with one it shows the variant and
still records nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.preview import preview_url
from paywall.models import AppealEvent, MeterRead
from tests.support.servers import serving
from tests.widget.test_chromium import ARGS, CHROMIUM, chromium  # noqa: F401 - the fixture

TODAY = clock.now().date()
EXPERIMENTS = {
    "footer-copy": {
        "holdback": 0.2,
        "start": (TODAY - dt.timedelta(days=3)).isoformat(),
        "end": (TODAY + dt.timedelta(days=30)).isoformat(),
        "channels": ["footer"],
        "variants": {"plain": {}, "urgent": {"headline": "We are in survival mode"}},
    }
}


@pytest.fixture
def service(make_settings: Callable[..., Settings], db: Database) -> Iterator[dict[str, Any]]:
    placeholder = make_server("127.0.0.1", 0, lambda env, start: [], threaded=True)
    port = placeholder.server_port
    placeholder.server_close()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings({"PAYWALL_PUBLIC_URL": base}, appeal={"experiments": EXPERIMENTS})
    server = make_server("127.0.0.1", port, create_app(settings, db=db), threaded=True)
    with serving(server):
        yield {"base": base, "settings": settings}


def _stored(db: Database) -> tuple[int, int]:
    with db.transaction(readonly=True) as s:
        events = s.scalar(select(func.count()).select_from(AppealEvent)) or 0
        reads = s.scalar(select(func.count()).select_from(MeterRead)) or 0
    return int(events), int(reads)


@pytest.mark.slow
def test_the_preview_page_runs_the_widget_only_with_a_preview_link(
    chromium: None,  # noqa: F811 - the fixture imported above
    service: dict[str, Any],
    db: Database,
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # Opened without a link: the note says why nothing shows, and the widget never loads.
            page.goto(service["base"] + "/support/preview")
            page.locator("#paywall-preview-missing").wait_for(state="visible")
            page.wait_for_timeout(500)
            assert any(u.endswith("/support/preview.js") for u in requested)
            assert not [u for u in requested if "/support/widget.js" in u or "/support/appeal" in u]
            assert page.locator("[data-paywall-appeal]").count() == 0
            page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
            assert _stored(db) == (0, 0)  # no meter read, no event

            # The staff link pasted into the same tab (only the hash changes: no reload) loads the
            # widget then; the previewed variant shows, and still nothing is recorded.
            requested.clear()
            link = preview_url(service["settings"], "footer-copy", "urgent")
            page.goto(link)
            region = page.get_by_role("region", name="We are in survival mode")
            region.wait_for(state="attached")
            appeal = [u for u in requested if "/support/appeal" in u]
            assert appeal and all("preview=" in u for u in appeal)
            assert page.locator("#paywall-preview-missing").is_hidden()
            region.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)  # past the widget's one-second batch
            page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
            page.wait_for_timeout(300)
            assert _stored(db)[0] == 0

            # Opened afresh with the link (a new tab), the same.
            fresh = browser.new_page()
            fresh.goto(link)
            fresh.get_by_role("region", name="We are in survival mode").wait_for(state="attached")
            assert "paywall_preview" not in fresh.url  # the widget takes the token out of the address
            fresh.wait_for_timeout(1500)
            assert _stored(db)[0] == 0
            assert not errors, errors
        finally:
            browser.close()
