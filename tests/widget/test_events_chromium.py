"""The widget's measurement in headless Chromium (issue 18's "Done when"): an impression counts
only once the appeal scrolls into view; Donate and Close are reported; a holdback browser reports
its view and sees nothing; a staff preview shows its variant and reports nothing.

Two local servers, each its own origin: the service (with a running footer experiment) and a long
demo article per reader (``/article/<reader>``, a server-mode page carrying that reader's access
token). What the widget reported is read back from ``appeal_events``.

Each reader's token is the real access check's (paywall/access/tokens.py), so the footer arm
comes from the experiment as in production; the staff preview is the real link
(paywall/experiments/preview.py ``preview_url``) opened on a holdback reader's article.
``PAYWALL_EVENTS_SCREENSHOTS=DIR`` keeps the screenshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from paywall import signing
from paywall.access.tokens import issue_access_token
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import subject_hash
from paywall.experiments.assignment import assign
from paywall.experiments.preview import preview_url
from paywall.models.appeals import AppealAsk, AppealEvent
from paywall.widget import intake
from paywall.widget.settings import appeal_settings
from tests.checkout.test_sessions import PLANS
from tests.support.faults import free_port
from tests.support.servers import serving
from tests.widget.test_chromium import ARGS, CHROMIUM, PARAGRAPHS, chromium  # noqa: F401 - the fixture
from tests.widget.test_events import EXPERIMENT

URGENT = "We are in survival mode"
GOAL_SETTINGS = {"kind": "supporters", "text": "{count} readers support us this month"}
GOAL = "0 readers support us this month"  # nobody has given yet in this test's database


def long_article(service: str, token: str) -> str:
    """An article several screens long, the widget tag after it: the appeal starts out of view."""
    body = "\n".join(f"<p>{p}</p>" for p in PARAGRAPHS * 8)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>A long read</title>
<style>body {{ margin: 0; font: 18px/1.6 Georgia, serif; }} main {{ max-width: 680px; margin: 0 auto; padding: 24px; }}</style>
</head><body><main><h1>A long read</h1><article>{body}</article>
<script src="{service}/support/widget.js" data-token="{token}" async></script>
</main><footer id="site-footer" style="padding: 16px 24px">The Eastside Chronicle</footer></body></html>"""


class Articles:
    """``/article/<reader>``: the long article with a fresh access token for that site reader."""

    def __init__(self, token_for: Callable[[str], str], service: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                reader = self.path.split("?")[0].rsplit("/", 1)[-1]
                body = long_article(service, token_for(reader)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def world(make_settings: Callable[..., Settings], db: Database) -> Iterator[dict[str, Any]]:
    with a_world(make_settings, db) as made:
        yield made


@contextlib.contextmanager
def a_world(
    make_settings: Callable[..., Settings], db: Database, events_url: str = ""
) -> Iterator[dict[str, Any]]:
    """The service and the articles; with ``events_url``, the widget is told to send beacons there."""
    placeholder = make_server("127.0.0.1", 0, lambda env, start: [], threaded=True)
    port = placeholder.server_port
    placeholder.server_close()
    service = f"http://127.0.0.1:{port}"
    box: dict[str, Settings] = {}

    def token_for(reader: str) -> str:
        if reader.startswith("gated-"):  # the meter is spent on this article: the gate
            claims: dict[str, Any] = {"sub": reader, "access": False, "reason": "meter_exhausted"}
            claims.update(until=None, appeal=False, art="story-1", meter={"used": 3, "limit": 3})
            token, _ = signing.sign(box["settings"], claims, purpose="access", ttl=dt.timedelta(minutes=15))
            return token
        # The access check's own token: its decision assigns the footer arm (appeal_experiment/variant).
        with db.transaction(readonly=True) as session:
            token, _ = issue_access_token(session, box["settings"], reader)
        return token

    articles = Articles(token_for, service)
    settings = make_settings(
        {"PAYWALL_PUBLIC_URL": service},
        server={"allowed_origins": [articles.url], "events_url": events_url},
        plans=PLANS,
        # A budget (generous), so the footer impressions are kept as asks.
        appeal={"experiments": EXPERIMENT, "goal": GOAL_SETTINGS, "max_asks": 10},
    )
    box["settings"] = settings
    app = create_app(settings, db=db)
    # The beacons the service received (Playwright does not report sendBeacon's requests).
    beacons: list[str] = []
    inner = app.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/support/events" and environ.get("REQUEST_METHOD") == "POST":
            beacons.append(environ.get("HTTP_ORIGIN", ""))
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    with serving(articles.server), serving(make_server("127.0.0.1", port, app, threaded=True)):
        yield {"settings": settings, "articles": articles.url, "service": service, "beacons": beacons}


def reader_in(settings: Settings, arm: str) -> str:
    experiment = appeal_settings(settings).experiments["footer-copy"]
    return next(f"reader-{n}" for n in range(1000) if assign(experiment, f"reader-{n}").variant == arm)


def reported(db: Database, settings: Settings, reader: str) -> list[tuple[str, str, str]]:
    """(type, action, variant) of the reader's recorded events, oldest first."""
    hashed = subject_hash(settings, reader)
    with db.transaction(readonly=True) as session:
        rows = session.scalars(
            select(AppealEvent).where(AppealEvent.subject == hashed).order_by(AppealEvent.id)
        )
        return [(r.type, r.action, r.variant) for r in rows]


def wait_for(db: Database, settings: Settings, reader: str, done: Callable[[list[Any]], bool]) -> list[Any]:
    deadline = time.monotonic() + 8
    while True:
        found = reported(db, settings, reader)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def shoot(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    keep = os.environ.get("PAYWALL_EVENTS_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / name)
    return shot


@pytest.mark.slow
def test_impressions_count_on_scroll_clicks_and_close_are_reported_holdback_and_preview(
    chromium: None,  # noqa: F811
    world: dict[str, Any],
    db: Database,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    settings: Settings = world["settings"]
    urgent, holdback = reader_in(settings, "urgent"), reader_in(settings, "holdback")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 760})
            page = context.new_page()
            sent: list[str] = world["beacons"]  # each a request the server pays for
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # 1. The appeal is below the fold: no impression while it is not seen, and its view
            #    waits for it (or for the page to go), so that a page sends one beacon.
            page.goto(f"{world['articles']}/article/{urgent}")
            region = page.get_by_role("region", name=URGENT)
            region.wait_for(state="attached")
            assert not region.is_visible() or page.evaluate(
                "document.querySelector('[data-paywall-appeal]').getBoundingClientRect().top > innerHeight"
            )
            shoot(page, tmp_path, "events-before-scroll.png")
            page.wait_for_timeout(1500)  # past the widget's one-second batching
            assert reported(db, settings, urgent) == []
            assert sent == []
            with db.transaction(readonly=True) as session:
                assert session.scalars(select(AppealAsk)).all() == []  # not seen: no ask spent

            # 2. Scrolled into view: one impression (and one ask of the budget), however often seen.
            region.scroll_into_view_if_needed()
            found = wait_for(db, settings, urgent, lambda rows: len(rows) >= 2)
            assert found == [("view", "", "urgent"), ("impression", "", "urgent")]
            assert len(sent) == 1  # the view and the impression in one beacon
            shoot(page, tmp_path, "events-in-view.png")
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            region.scroll_into_view_if_needed()
            page.wait_for_timeout(1500)
            assert len(reported(db, settings, urgent)) == 2
            assert len(sent) == 1
            with db.transaction(readonly=True) as session:
                ((subject, channel),) = [(a.subject, a.channel) for a in session.scalars(select(AppealAsk))]
            assert (subject, channel) == (urgent, "footer")

            # 3. Donate: the click is reported as the page goes to /donate.
            page.get_by_role("link", name="Donate").click()
            page.wait_for_url(f"{world['service']}/donate?*")
            found = wait_for(db, settings, urgent, lambda rows: len(rows) >= 3)
            assert found[2] == ("click", "donate", "urgent")

            # 4. Close, on a new page view (a new ask: its own view and impression).
            page.goto(f"{world['articles']}/article/{urgent}")
            region.wait_for(state="attached")
            region.scroll_into_view_if_needed()
            wait_for(db, settings, urgent, lambda rows: len(rows) >= 5)
            page.get_by_role("button", name="Close").click()
            found = wait_for(db, settings, urgent, lambda rows: len(rows) >= 6)
            assert [t for t, _, _ in found] == ["view", "impression", "click", "view", "impression", "close"]
            assert errors == []

            # 5. A holdback browser sees no appeal; its view is still reported (the lift's baseline),
            #    as the page goes (nothing follows a view here).
            other = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
            other.goto(f"{world['articles']}/article/{holdback}")
            other.wait_for_load_state("networkidle")
            other.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            other.wait_for_timeout(1500)
            assert other.locator("[data-paywall-appeal]").count() == 0
            shoot(other, tmp_path, "events-holdback.png")
            assert reported(db, settings, holdback) == []
            other.goto("about:blank")  # pagehide: the view goes
            assert wait_for(db, settings, holdback, bool) == [("view", "", "holdback")]

            # 6. A staff preview link shows the variant (even to a holdback browser), leaves the
            #    address bar clean and reports nothing, in view, clicked or closed.
            staff = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
            beacons: list[str] = []
            previews: list[str] = []
            staff.on("request", lambda r: beacons.append(r.url) if "/support/events" in r.url else None)
            staff.on("request", lambda r: previews.append(r.url) if "preview=" in r.url else None)
            link = preview_url(
                settings, "footer-copy", "urgent", page=f"{world['articles']}/article/{holdback}"
            )
            staff.goto(link)
            preview = staff.get_by_role("region", name=URGENT)
            preview.wait_for(state="attached")
            assert len(previews) == 1 and "/support/appeal?" in previews[0]
            assert "paywall_preview" not in staff.url
            preview.scroll_into_view_if_needed()
            # The goal line sits under the text, above the buttons.
            goal = preview.locator("p.pw-appeal__goal")
            assert goal.inner_text() == GOAL
            assert goal.evaluate("g => g.previousElementSibling.className") == "pw-appeal__text"
            shoot(staff, tmp_path, "events-preview.png")
            before = len(sent)
            staff.get_by_role("button", name="Close").click()
            staff.wait_for_timeout(1500)
            assert beacons == []
            assert len(sent) == before
            assert reported(db, settings, holdback) == [("view", "", "holdback")]
            with db.transaction(readonly=True) as session:
                assert (
                    session.scalar(select(func.count()).select_from(AppealEvent)) == 7
                )  # 6 + the holdback view
        finally:
            browser.close()


@pytest.mark.slow
def test_the_gate_reports_its_view_impression_and_sign_in_click(
    chromium: None,  # noqa: F811
    world: dict[str, Any],
    db: Database,
) -> None:
    from playwright.sync_api import sync_playwright

    settings: Settings = world["settings"]
    reader = "gated-reader-1"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
            page.goto(f"{world['articles']}/article/{reader}")
            gate = page.locator("[data-paywall-gate]")
            gate.wait_for(state="attached")
            # The gate takes the focus (its headline), which scrolls it into view: seen at once.
            # No experiment runs on the gate here: experiment and variant are "".
            found = wait_for(db, settings, reader, lambda rows: len(rows) >= 2)
            assert found == [("view", "", ""), ("impression", "", "")]
            page.get_by_role("button", name="Sign in").click()
            found = wait_for(db, settings, reader, lambda rows: len(rows) >= 3)
            assert found[2] == ("click", "signin", "")
            with db.transaction(readonly=True) as session:
                channels = {e.channel for e in session.scalars(select(AppealEvent))}
                assert channels == {"gate"}
                assert session.scalars(select(AppealAsk)).all() == []  # the gate is not an ask
        finally:
            browser.close()


@pytest.mark.slow
def test_beacons_go_to_the_intake_the_answer_names(
    chromium: None,  # noqa: F811
    make_settings: Callable[..., Settings],
    db: Database,
) -> None:
    """[server] events_url: the widget sends its beacons to the beacon intake, not the service."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    with a_world(make_settings, db, events_url=f"http://127.0.0.1:{port}") as world:
        settings: Settings = world["settings"]
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        listening = threading.Event()
        app = create_app(settings, db=db)
        served = threading.Thread(
            target=lambda: loop.run_until_complete(
                intake.serve(app, "127.0.0.1", port, stop=stop, ready=lambda _: listening.set())
            )
        )
        served.start()
        try:
            assert listening.wait(10)
            urgent = reader_in(settings, "urgent")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    page = browser.new_context(viewport={"width": 1000, "height": 760}).new_page()
                    page.goto(f"{world['articles']}/article/{urgent}")
                    region = page.get_by_role("region", name=URGENT)
                    region.wait_for(state="attached")
                    region.scroll_into_view_if_needed()
                    page.get_by_role("button", name="Close").click()
                    page.wait_for_timeout(500)
                finally:
                    browser.close()
        finally:
            loop.call_soon_threadsafe(stop.set)
            served.join(10)
            loop.close()
        # Written as the intake stopped (it buffers); none reached the service's own route.
        assert reported(db, settings, urgent) == [
            ("view", "", "urgent"),
            ("impression", "", "urgent"),
            ("close", "", "urgent"),
        ]
        assert world["beacons"] == []
