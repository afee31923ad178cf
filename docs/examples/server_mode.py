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
from urllib.parse import parse_qs, urlsplit
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
    path, method = str(environ.get("PATH_INFO", "/")), environ.get("REQUEST_METHOD")
    html_type = ("Content-Type", "text/html; charset=utf-8")
    if path == "/signin":
        # [signin] return_url points here, with ?paywall_signin=ONE_TIME_TOKEN. Mail scanners open
        # links, so the GET only shows a button; the exchange happens on the reader's click.
        if method == "POST":
            form = parse_qs(environ["wsgi.input"].read(int(str(environ.get("CONTENT_LENGTH") or 0))).decode())  # type: ignore[attr-defined]
            signed_in = paywall("/v1/signin/exchange", {"token": form.get("paywall_signin", [""])[0]})
            cookie = ("Set-Cookie", f"reader={signed_in['reader']}; Path=/; HttpOnly; SameSite=Lax")
            back = urlsplit(form.get("return_to", ["/"])[0]).path or "/"  # our own pages only
            start_response("303 See Other", [cookie, ("Location", back)])  # type: ignore[operator]
            return [b""]
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        fields = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, [""])[0])}">'
            for name in ("paywall_signin", "return_to")
        )
        start_response("200 OK", [html_type])  # type: ignore[operator]
        return [f'<form method="post">{fields}<button>Continue signed in</button></form>'.encode()]
    article = path.rsplit("/", 1)[-1] or "a1"
    cookie = ("Set-Cookie", f"reader={reader}; Path=/; HttpOnly; SameSite=Lax")
    start_response("200 OK", [html_type, cookie])  # type: ignore[operator]
    return [f"<!doctype html><title>{article}</title>{render_article(reader, article)}".encode()]


if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ.get("PORT", "8080")), app).serve_forever()  # type: ignore[arg-type]
