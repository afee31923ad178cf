"""The appeal widget in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Three local servers on 127.0.0.1, each its own origin: the service, a demo article page that embeds
the widget (so CORS is exercised for real), and a stand-in for Stripe's API and hosted Checkout.
The reader sees the appeal, reaches Checkout from Donate, closes it, and it stays closed.

``PAYWALL_WIDGET_SCREENSHOT=docs/widget.png`` also writes the screenshot in docs/reader-flows.md.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from paywall import clock, signing
from paywall.access.dismissals import dismissed_until
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from tests.checkout.test_sessions import PLANS
from tests.support.servers import serving
from tests.support.stripe_fake import FakeStripe

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
PARAGRAPHS = [
    "The council voted on Tuesday night to close the last public library branch in the east of the city, "
    "a decision that residents say will leave thousands of children without a place to study after school.",
    "Our reporters spent three months reading budget documents, attending meetings and talking to the "
    "people who use the branch every day. What they found is a story about priorities, not money.",
    "The branch costs less to run each year than the council spends on consultants in a single month, "
    "according to figures released under a freedom-of-information request.",
]


def article_html(service: str, token: str) -> str:
    body = "\n".join(f"<p>{p}</p>" for p in PARAGRAPHS * 3)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>The last library in the east</title>
<style>
body {{ margin: 0; font: 18px/1.6 Georgia, serif; color: #121212; }}
header {{ background: #052962; color: #fff; padding: 12px 24px; font: 700 22px/1.2 sans-serif; }}
main {{ max-width: 680px; margin: 0 auto; padding: 8px 24px 24px; }}
h1 {{ font-size: 34px; line-height: 1.15; }}
footer {{ border-top: 1px solid #ddd; padding: 16px 24px; color: #555; font: 14px sans-serif; }}
</style></head>
<body>
<header>The Eastside Chronicle</header>
<main>
<h1>The last library in the east</h1>
<article>{body}<p><a id="last-link" href="#top">Read more local news</a></p></article>
<script src="{service}/support/widget.js" data-token="{token}" async></script>
</main>
<footer id="site-footer">The Eastside Chronicle is an independent newsroom.</footer>
</body></html>"""


class DemoSite:
    """A tiny article server on its own origin (a port of its own) carrying the widget tag."""

    def __init__(self, page: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = page().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> DemoSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs the chromium package)")
        print(f"skipping the widget browser test: {CHROMIUM} is not installed (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture
def widget_plans() -> dict[str, Any]:
    """Plans with real prices (the example plan's placeholder is not offered: no Subscribe)."""
    return PLANS


@pytest.fixture
def servers(
    make_settings: Callable[..., Settings], db: Database, widget_plans: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The service (its own port), the demo site (another), and fake Stripe (a third)."""
    token_box: dict[str, str] = {}
    with (
        FakeStripe() as stripe_api,
        DemoSite(lambda: article_html(state["service"], token_box["token"])) as demo,
    ):
        # Bind the service first: its public URL must be known before the settings are built.
        placeholder = make_server("127.0.0.1", 0, lambda env, start: [], threaded=True)
        port = placeholder.server_port
        placeholder.server_close()
        service = f"http://127.0.0.1:{port}"
        state: dict[str, Any] = {"service": service}
        settings = make_settings(
            {
                "PAYWALL_STRIPE_SECRET_KEY": "sk_test_widget",
                "PAYWALL_STRIPE_API_BASE": stripe_api.url,
                "PAYWALL_PUBLIC_URL": service,
            },
            server={"allowed_origins": [f"http://127.0.0.1:{demo.port}"]},
            plans=widget_plans,
        )
        token, _ = signing.sign(
            settings,
            {"sub": "reader-42", "access": False, "reason": "metered", "until": None, "appeal": True},
            purpose="access",
            ttl=dt.timedelta(minutes=15),
        )
        token_box["token"] = token
        app = create_app(settings, db=db)
        server = make_server("127.0.0.1", port, app, threaded=True)
        with serving(server):
            state.update(
                settings=settings,
                token=token,
                stripe=stripe_api,
                demo=f"http://127.0.0.1:{demo.port}/article",
                foreign_demo=f"http://localhost:{demo.port}/article",
            )
            yield state


CLS_OBSERVER = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__shifts.push(entry.value);
}).observe({type: "layout-shift", buffered: true});
"""


@pytest.mark.slow
def test_reader_sees_the_appeal_donates_and_closes_it(
    chromium: None, servers: dict[str, Any], db: Database, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    stripe_api: FakeStripe = servers["stripe"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 760})
            context.add_init_script(CLS_OBSERVER)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            appeal_calls: list[str] = []
            page.on("request", lambda r: appeal_calls.append(r.url) if "/support/appeal" in r.url else None)

            # 1. The appeal appears where the tag is: after the article, before the site footer.
            page.goto(servers["demo"])
            region = page.get_by_role("region", name="Help keep us open")
            region.wait_for()
            assert "support us with your donations or subscriptions" in region.inner_text()
            order = page.evaluate(
                """() => {
                  const a = document.querySelector('[data-paywall-appeal]');
                  const art = document.querySelector('article');
                  const foot = document.getElementById('site-footer');
                  return [art.compareDocumentPosition(a), a.compareDocumentPosition(foot)];
                }"""
            )
            assert order == [4, 4]  # DOCUMENT_POSITION_FOLLOWING both ways
            # Nothing on screen moved: no layout shift was recorded.
            page.wait_for_timeout(300)
            assert page.evaluate("window.__shifts") == []

            # 2. Keyboard: from the article's last link, Tab reaches Subscribe, Donate, then Close.
            page.focus("#last-link")
            names = []
            for _ in range(3):
                page.keyboard.press("Tab")
                names.append(
                    page.evaluate(
                        "document.activeElement.getAttribute('aria-label') || document.activeElement.textContent"
                    )
                )
            assert names == ["Subscribe", "Donate", "Close"]
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"  # the focus is visible

            # 3. The screenshot for docs/reader-flows.md: the end of the article with the appeal.
            page.evaluate("document.activeElement.blur()")
            region.scroll_into_view_if_needed()
            page.evaluate("window.scrollBy(0, 160)")
            shot = tmp_path / "widget.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            target = os.environ.get("PAYWALL_WIDGET_SCREENSHOT")
            if target:
                shutil.copy(shot, target)

            # 4. Donate opens the donation page; its button reaches (fake) Stripe Checkout.
            page.get_by_role("link", name="Donate").click()
            page.wait_for_url(f"{servers['service']}/donate?token=*")
            page.get_by_role("button", name="Donate").click()
            page.wait_for_url(f"{stripe_api.url}/checkout/*")
            assert page.get_by_role("heading").inner_text().startswith("Fake Stripe Checkout")
            (sent,) = stripe_api.posts("/v1/checkout/sessions")
            assert sent.form["client_reference_id"] == "reader-42"
            assert sent.form["metadata[kind]"] == "donation"
            assert sent.form["line_items[0][price_data][unit_amount]"] == "1000"

            # 5. Close hides it now, on the server, and after a reload.
            page.goto(servers["demo"])
            region.wait_for()
            with page.expect_response(lambda r: r.url.endswith("/support/dismiss")) as dismissed:
                page.get_by_role("button", name="Close").click()
            assert dismissed.value.status == 200
            assert page.locator("[data-paywall-appeal]").count() == 0
            with db.transaction(readonly=True) as session:
                until = dismissed_until(session, servers["settings"], "reader-42")
            assert until is not None and until > clock.now() + dt.timedelta(days=6)

            calls_before = len(appeal_calls)
            page.reload()
            page.wait_for_load_state("networkidle")
            assert page.locator("[data-paywall-appeal]").count() == 0
            assert len(appeal_calls) == calls_before  # localStorage answered: not even a request

            # With localStorage cleared (another browser), the server's dismissal still holds.
            page.evaluate("localStorage.clear()")
            page.reload()
            page.wait_for_load_state("networkidle")
            assert len(appeal_calls) == calls_before + 1
            assert page.locator("[data-paywall-appeal]").count() == 0
            assert int(page.evaluate("localStorage.getItem('paywall:appeal-hidden-until')")) > 0
            assert errors == []

            # 6. A page on an origin the operator did not allow gets nothing (CORS).
            other = context.new_page()
            with other.expect_event("requestfailed", predicate=lambda r: "/support/appeal" in r.url):
                other.goto(servers["foreign_demo"])
            other.wait_for_load_state("networkidle")
            assert other.locator("[data-paywall-appeal]").count() == 0
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("widget_plans", [{}])  # only the shipped example plan, price_REPLACE_ME
def test_example_plan_placeholder_price_is_never_offered_in_the_widget(
    chromium: None, servers: dict[str, Any]
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(servers["demo"])
            region = page.get_by_role("region", name="Help keep us open")
            region.wait_for()
            links = region.get_by_role("link")
            assert links.all_inner_texts() == ["Donate"]  # no Subscribe button that would fail on click
            assert "pw-appeal__button--primary" in (links.first.get_attribute("class") or "")
        finally:
            browser.close()
