"""``POST /support/events``: the widget's beacons (what was seen, clicked, closed), answered 202.

The widget sends them with ``navigator.sendBeacon`` as a ``text/plain`` body (a "simple" request:
no CORS preflight, and it survives the page being closed), or with ``fetch`` as JSON. Either way
the body is JSON: ``{"events": [{"ask", "type", "action"?}]}`` (paywall/experiments/events.py).
The answer, ``{"recorded": n, "dropped": m}``, is for tests and curious operators; a beacon never
reads it. No cookies.

A page sends a few beacons for each access check, so this route is served by a small WSGI app in
front of Flask (``install``): no request context, no before/after-request hooks, no Flask-Limiter.
It keeps what those give the other /support/* routes: the origin check and CORS headers of
paywall/browser.py, the problem+json answers of paywall/errors.py, a request id, ``nosniff``, and
a limit per client address (``[ratelimit] events_per_address``, counted per worker process:
paywall/checkout/limits.py ``WorkerLimiter``). Every other path goes on to Flask untouched.
The logic (parsing, asks, rows, the buffered writer) is paywall/experiments/events.py's.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from paywall import browser, clock
from paywall.checkout import limits
from paywall.checkout.settings import ratelimit_settings
from paywall.context import settings_of
from paywall.db import is_transient
from paywall.errors import ApiError, bad_request, problem_body
from paywall.experiments import events

PATH = "/support/events"
# app.extensions key: the (method, path) pairs answered in front of Flask.
FRONT_ROUTES = "paywall.front_routes"
# 50 events with asks of about 150 characters fit in a tenth of this.
MAX_BODY_BYTES = 64 * 1024
MEDIA_TYPES = ("text/plain", "application/json")
ALLOW = "OPTIONS, POST"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")

log = logging.getLogger(__name__)

Answer = tuple[int, bytes, list[tuple[str, str]]]
_STATUS = {
    200: "200 OK",
    202: "202 Accepted",
    400: "400 Bad Request",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    413: "413 Payload Too Large",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Entity",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


def _problem(exc: ApiError) -> Answer:
    body = problem_body(exc.status, exc.detail, errors=exc.errors, type_=exc.type, title=exc.title)
    headers = [("Content-Type", "application/problem+json"), *exc.headers.items()]
    return exc.status, json.dumps(body).encode(), headers


class EventsEndpoint:
    """WSGI: POST (and OPTIONS) /support/events answered here; everything else passed to ``app``."""

    def __init__(self, flask_app: Flask, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.settings = settings_of(flask_app)
        self.writer = events.writer_of(flask_app)
        conf = ratelimit_settings(self.settings)
        self.limiter = limits.WorkerLimiter(conf.events_per_address) if conf.enabled else None
        self.proxy_hops = conf.proxy_hops
        self.allowed_origins = frozenset(self.settings.server.allowed_origins)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        origin = environ.get("HTTP_ORIGIN")
        try:
            if method == "POST":
                status, body, headers = self.post(environ, origin)
            elif method == "OPTIONS":
                status, body, headers = 200, b"", [("Allow", ALLOW), ("Content-Type", "text/plain")]
            else:
                raise ApiError(
                    405, "The method is not allowed for the requested URL.", headers={"Allow": ALLOW}
                )
        except ApiError as exc:
            status, body, headers = _problem(exc)
        except Exception as exc:  # one error shape, never a stack trace (as errors.py's handler)
            if is_transient(exc):
                log.warning("transient database error on POST %s: %s", PATH, type(exc).__name__)
                status, body, headers = _problem(
                    ApiError(
                        503,
                        "The database is unavailable; try again shortly.",
                        type_="unavailable",
                        headers={"Retry-After": "5"},
                    )
                )
            else:
                log.exception("unhandled error on POST %s", PATH)
                status, body, headers = _problem(
                    ApiError(500, "An internal error occurred; it has been logged.")
                )
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        headers += [
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Vary", "Origin"),
            ("X-Content-Type-Options", "nosniff"),
            (REQUEST_ID_HEADER, incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex),
        ]
        # CORS as browser.cors_headers: the allowed origins may read the answer (and preflight).
        if origin and origin in self.allowed_origins:
            headers.append(("Access-Control-Allow-Origin", origin))
            if method == "OPTIONS":
                headers += [
                    ("Access-Control-Allow-Methods", "GET, POST"),
                    ("Access-Control-Allow-Headers", "Content-Type"),
                    ("Access-Control-Max-Age", "600"),
                ]
        start_response(_STATUS.get(status, f"{status} Error"), headers)
        return [body]

    def post(self, environ: dict[str, Any], origin: str | None) -> Answer:
        # The origin check of browser.refuse_foreign_writes.
        if origin and not browser.origin_allowed(self.settings, origin):
            raise ApiError(403, "This origin may not call the widget.", type_="forbidden")
        if self.limiter is not None:
            retry_after = self.limiter.hit(limits.address_of(environ, self.proxy_hops))
            if retry_after is not None:
                raise ApiError(429, limits.TOO_MANY, headers={"Retry-After": str(retry_after)})
        reported = self.beacon(environ)
        rows, spent, dropped = events.event_rows(self.settings, reported, clock.now())
        self.writer.add(rows, spent)
        body = json.dumps({"recorded": len(rows), "dropped": dropped}).encode()
        return 202, body, [("Content-Type", "application/json")]

    def beacon(self, environ: dict[str, Any]) -> list[events.Reported]:
        """The beacon's events: its JSON body (either media type), its shape checked."""
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if mimetype not in MEDIA_TYPES:
            raise ApiError(
                415,
                "Send the events as text/plain (sendBeacon) or application/json.",
                errors={"Content-Type": ["text/plain or application/json."]},
                type_="unsupported-media-type",
            )
        too_large = ApiError(
            413, "The request body is too large.", errors={"body": [f"At most {MAX_BODY_BYTES} bytes."]}
        )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            raise too_large
        stream = environ["wsgi.input"]
        # Without a Content-Length (chunked), read one byte past the limit to know.
        raw = stream.read(length) if length else stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(
                400,
                "The request body is not valid JSON.",
                errors={"body": ["Invalid JSON body."]},
                type_="malformed",
            ) from None
        try:
            return events.parse_beacon(body)
        except events.InvalidBeacon as exc:
            raise bad_request(exc.field, exc.message) from None


def install(app: Flask) -> None:
    """Serve POST /support/events in front of ``app``'s Flask machinery."""
    app.wsgi_app = EventsEndpoint(app, app.wsgi_app)  # type: ignore[method-assign]
    # Not in app.url_map: say which routes are served in front of it (the docs' route check reads this).
    app.extensions.setdefault(FRONT_ROUTES, set()).update({("POST", PATH), ("OPTIONS", PATH)})
