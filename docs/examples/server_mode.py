"""Server mode in about ten lines: a site with a backend gates the article body itself.

Run beside paywall (stdlib only):
    PAYWALL_URL=http://127.0.0.1:8000 PAYWALL_SITE_KEY=pw_... python3 docs/examples/server_mode.py

Each view asks POST /v1/access (it counts the metered read, so readers with free articles left
read in full). A reader who may not read gets the excerpt only - the rest never leaves the server -
and the widget with the answer's token, which shows the gate. Readers are identified by the
site's own cookie id, or by the reader id a sign-in returned (see /signin below).
"""

from __future__ import annotations

import html
import json
import os
import secrets
import urllib.request
from http import cookies
from wsgiref.simple_server import make_server

PAYWALL = os.environ.get("PAYWALL_URL", "http://127.0.0.1:8000")
KEY = os.environ.get("PAYWALL_SITE_KEY", "")
ARTICLE = ["First paragraph, free to everyone.", "Second paragraph.", "The rest of the story."]


def paywall(path: str, body: dict[str, object]) -> dict[str, object]:
    """POST to paywall with the site key; the JSON answer."""
    # PAYWALL is the operator's own http(s) URL, never user input.
    request = urllib.request.Request(  # noqa: S310
        PAYWALL + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=3) as resp:  # noqa: S310
        return json.loads(resp.read())  # type: ignore[no-any-return]


# --- the part a site needs -------------------------------------------------------------------
def render_article(reader: str, article: str, level: str = "metered") -> str:
    answer = paywall("/v1/access", {"reader": reader, "article": article, "level": level})
    shown = ARTICLE if answer["allowed"] else ARTICLE[:1]  # only the excerpt leaves the server
    body = "".join(f"<p>{html.escape(p)}</p>" for p in shown)
    token = answer.get("token") or paywall("/v1/access/token", {"reader": reader})["token"]
    widget = (
        f'<script src="{PAYWALL}/support/widget.js" data-token="{html.escape(str(token))}" async></script>'
    )
    return f"<article>{body}</article>{widget}"


# ----------------------------------------------------------------------------------------------


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    jar = cookies.SimpleCookie(str(environ.get("HTTP_COOKIE", "")))
    reader = jar["reader"].value if "reader" in jar else "anon-" + secrets.token_urlsafe(12)
    path = str(environ.get("PATH_INFO", "/"))
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Set-Cookie", f"reader={reader}; Path=/; HttpOnly"),
    ]
    query = str(environ.get("QUERY_STRING", ""))
    if path == "/signin" and query.startswith("paywall_signin="):
        # [signin] return_url points here: exchange the one-time token, remember who signed in.
        signed_in = paywall("/v1/signin/exchange", {"token": query.split("=", 1)[1].split("&")[0]})
        reader = str(signed_in["reader"])
        headers[1] = ("Set-Cookie", f"reader={reader}; Path=/; HttpOnly")
        start_response("303 See Other", [*headers, ("Location", "/articles/a1")])  # type: ignore[operator]
        return [b""]
    article = path.rsplit("/", 1)[-1] or "a1"
    start_response("200 OK", headers)  # type: ignore[operator]
    return [f"<!doctype html><title>{article}</title>{render_article(reader, article)}".encode()]


if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ.get("PORT", "8080")), app).serve_forever()  # type: ignore[arg-type]
