"""``POST /support/events``: the widget's beacons (what was seen, clicked, closed), answered 202.

The widget sends them with ``navigator.sendBeacon`` as a ``text/plain`` body (a "simple" request:
no CORS preflight, and it survives the page being closed), or with ``fetch`` as JSON. Either way
the body is JSON: ``{"events": [{"ask", "type", "action"?}]}`` (paywall/experiments/events.py).
The answer, ``{"recorded": n, "dropped": m}``, is for tests and curious operators; a beacon never
reads it. No cookies.

A page sends a few beacons for each access check, so this route is answered in front of Flask
(paywall/front.py: request id, latency metric, ``nosniff``, one error shape): no request context,
no Flask-Limiter. It keeps what those give the other /support/* routes: the origin check and CORS
headers of paywall/browser.py and a limit per client address (``[ratelimit] events_per_address``,
counted per worker process: paywall/checkout/limits.py ``WorkerLimiter``).
The logic (parsing, asks, rows, the buffered writer) is paywall/experiments/events.py's.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from paywall import browser, clock, front
from paywall.checkout import limits
from paywall.checkout.settings import ratelimit_settings
from paywall.context import settings_of
from paywall.errors import ApiError, bad_request
from paywall.experiments import events

PATH = "/support/events"
# 50 events with asks of about 150 characters fit in a tenth of this.
MAX_BODY_BYTES = 64 * 1024
MEDIA_TYPES = ("text/plain", "application/json")


class EventsEndpoint:
    """POST and OPTIONS /support/events, as handlers for paywall/front.py."""

    def __init__(self, flask_app: Flask) -> None:
        self.settings = settings_of(flask_app)
        self.writer = events.writer_of(flask_app)
        conf = ratelimit_settings(self.settings)
        self.limiter = limits.WorkerLimiter(conf.events_per_address) if conf.enabled else None
        self.proxy_hops = conf.proxy_hops
        self.allowed_origins = frozenset(self.settings.server.allowed_origins)

    def route(self) -> front.Route:
        return front.Route(
            PATH, {"POST": self.post, "OPTIONS": self.options}, extra_headers=self.common_headers
        )

    def common_headers(self, environ: front.Environ) -> front.Headers:
        headers = [("Cache-Control", "no-store"), ("Vary", "Origin")]
        # CORS as browser.cors_headers: the allowed origins may read the answer (and preflight).
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin in self.allowed_origins:
            headers.append(("Access-Control-Allow-Origin", origin))
            if environ.get("REQUEST_METHOD") == "OPTIONS":
                headers += [
                    ("Access-Control-Allow-Methods", "GET, POST"),
                    ("Access-Control-Allow-Headers", "Content-Type"),
                    ("Access-Control-Max-Age", "600"),
                ]
        return headers

    def options(self, _environ: front.Environ) -> front.Answer:
        return 200, b"", [("Allow", "OPTIONS, POST"), ("Content-Type", "text/plain")]

    def post(self, environ: front.Environ) -> front.Answer:
        # The origin check of browser.refuse_foreign_writes.
        origin = environ.get("HTTP_ORIGIN")
        if origin and not browser.origin_allowed(self.settings, origin):
            raise ApiError(403, "This origin may not call the widget.", type_="forbidden")
        if self.limiter is not None:
            retry_after = self.limiter.hit(limits.address_of(environ, self.proxy_hops))
            if retry_after is not None:
                raise ApiError(429, limits.TOO_MANY, headers={"Retry-After": str(retry_after)})
        reported = self.beacon(environ)
        rows, spent, dropped = events.event_rows(self.settings, reported, clock.now())
        self.writer.add(rows, spent)
        return front.json_answer(202, {"recorded": len(rows), "dropped": dropped})

    def beacon(self, environ: front.Environ) -> list[events.Reported]:
        """The beacon's events: its JSON body (either media type), its shape checked."""
        if front.media_type(environ) not in MEDIA_TYPES:
            raise ApiError(
                415,
                "Send the events as text/plain (sendBeacon) or application/json.",
                errors={"Content-Type": ["text/plain or application/json."]},
                type_="unsupported-media-type",
            )
        body: Any = front.parse_json(front.read_body(environ, MAX_BODY_BYTES))
        try:
            return events.parse_beacon(body)
        except events.InvalidBeacon as exc:
            raise bad_request(exc.field, exc.message) from None


def install(app: Flask) -> None:
    """Serve POST /support/events in front of ``app``'s Flask machinery."""
    front.install(app, EventsEndpoint(app).route())
