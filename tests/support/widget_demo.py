"""The demo news site of the gate's browser test, on an origin of its own (a loopback port).

Two ways to carry the widget, as the README tells publishers:

- client mode (``/client/N``): a static page, the whole article in ``[data-paywall-body]``, and the
  tag with ``data-mode="client"``. No backend at all.
- server mode (``/server/N``): a tiny backend with its own visitor cookie. It asks ``POST /v1/access``
  with its site key, renders only the excerpt when the answer says no, and hands the widget the
  access token. ``/paywall/return`` is its ``[signin] return_url``: it exchanges the one-time token
  (``POST /v1/signin/exchange``) and remembers the reader in its own cookie.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import urllib.request
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.widget.test_chromium import PARAGRAPHS

PREVIEW = 2
STYLE = """
body { margin: 0; font: 18px/1.6 Georgia, serif; color: #121212; }
header { background: #052962; color: #fff; padding: 12px 24px; font: 700 22px/1.2 sans-serif; }
main { max-width: 680px; margin: 0 auto; padding: 8px 24px 24px; }
h1 { font-size: 34px; line-height: 1.15; }
footer { border-top: 1px solid #ddd; padding: 16px 24px; color: #555; font: 14px sans-serif; }
"""


def page(title: str, paragraphs: list[str], tag: str) -> str:
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<header>The Eastside Chronicle</header>
<main>
<h1>{html.escape(title)}</h1>
<article data-paywall-body>{body}</article>
{tag}
</main>
<footer id="site-footer">The Eastside Chronicle is an independent newsroom.</footer>
</body></html>"""


def title(n: int) -> str:
    return f"The last library in the east, part {n}"


class DemoSite:
    """``with DemoSite(service_url, site_key_header) as site``: serves on ``site.url``."""

    def __init__(self, service: str, site_key: dict[str, str]) -> None:
        self.service = service
        self.site_key = site_key
        self.api_calls: list[tuple[str, dict[str, Any]]] = []
        demo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    status, headers, body = demo.route(self)
                except Exception as exc:  # a failed service call: say which, for the test's log
                    status, headers, body = 500, [("Content-Type", "text/plain")], repr(exc).encode()
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
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

    def article(self, mode: str, n: int) -> str:
        return f"{self.url}/{mode}/{n}"

    # -- the service, as a site's backend calls it ------------------------------------------------

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.api_calls.append((path, body))
        request = urllib.request.Request(
            self.service + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **self.site_key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer

    # -- routes ------------------------------------------------------------------------------------

    def route(self, req: BaseHTTPRequestHandler) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(req.path)
        parts = url.path.strip("/").split("/")
        html_type = ("Content-Type", "text/html; charset=utf-8")
        if len(parts) == 2 and parts[0] == "client" and parts[1].isdigit():
            return 200, [html_type], self.client_page(int(parts[1])).encode()
        if len(parts) == 2 and parts[0] == "server" and parts[1].isdigit():
            return self.server_page(req, int(parts[1]))
        if url.path == "/paywall/return":
            return self.signin_return(parse_qs(url.query))
        return 404, [html_type], b"not found"

    def client_page(self, n: int) -> str:
        tag = (
            f'<script src="{self.service}/support/widget.js" data-mode="client" '
            f'data-article="story-{n}" data-level="metered" async></script>'
        )
        return page(title(n), PARAGRAPHS * 3, tag)

    def server_page(self, req: BaseHTTPRequestHandler, n: int) -> tuple[int, list[tuple[str, str]], bytes]:
        cookie = SimpleCookie(req.headers.get("Cookie", ""))
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        if "reader" in cookie:
            reader = cookie["reader"].value
        else:
            # The site's own id for a visitor who never signed in: its metered reader.
            reader = "visitor-" + secrets.token_hex(6)
            headers.append(("Set-Cookie", f"reader={reader}; Path=/; HttpOnly; SameSite=Lax"))
        answer = self.call("/v1/access", {"reader": reader, "article": f"story-{n}"})
        if answer["allowed"]:
            paragraphs = PARAGRAPHS * 3
            token = self.call("/v1/access/token", {"reader": reader})["token"]
        else:
            # The hard paywall: what the reader may not read never leaves the server.
            paragraphs = (PARAGRAPHS * 3)[:PREVIEW]
            token = answer["token"]
        tag = f'<script src="{self.service}/support/widget.js" data-token="{html.escape(token)}" async></script>'
        return 200, headers, page(title(n), paragraphs, tag).encode()

    def signin_return(self, query: dict[str, list[str]]) -> tuple[int, list[tuple[str, str]], bytes]:
        """[signin] return_url: exchange the one-time token, remember the reader, back to the article."""
        signed_in = self.call("/v1/signin/exchange", {"token": query["paywall_signin"][0]})
        back = query.get("return_to", [self.url + "/server/1"])[0]
        headers = [
            ("Location", back if back.startswith(self.url + "/") else self.url + "/server/1"),
            ("Set-Cookie", f"reader={signed_in['reader']}; Path=/; HttpOnly; SameSite=Lax"),
        ]
        return 303, headers, b""
