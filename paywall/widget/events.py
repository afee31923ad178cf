"""``POST /support/events``: the widget's beacons (what was seen, clicked, closed), answered 202.

The widget sends them with ``navigator.sendBeacon`` as a ``text/plain`` body (a "simple" request:
no CORS preflight, and it survives the page being closed), or with ``fetch`` as JSON. Either way
the body is JSON: ``{"events": [{"ask", "type", "action"?}]}`` (paywall/experiments/events.py).
The answer, ``{"recorded": n, "dropped": m}``, is for tests and curious operators; a beacon never
reads it. No cookies; the origin check and CORS are the other /support/* routes' (paywall/browser.py).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from paywall import browser, clock
from paywall.context import current_db, current_settings
from paywall.errors import ApiError, bad_request
from paywall.experiments import events

# 50 events with asks of about 150 characters fit in a tenth of this.
MAX_BODY_BYTES = 64 * 1024
MEDIA_TYPES = ("text/plain", "application/json")

bp = Blueprint("widget_events", __name__)
browser.install(bp)


def _beacon() -> Any:
    """The decoded JSON body, whichever of the two media types carried it."""
    if request.mimetype not in MEDIA_TYPES:
        raise ApiError(
            415,
            "Send the events as text/plain (sendBeacon) or application/json.",
            errors={"Content-Type": ["text/plain or application/json."]},
            type_="unsupported-media-type",
        )
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(
            413, "The request body is too large.", errors={"body": [f"At most {MAX_BODY_BYTES} bytes."]}
        )
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:  # chunked, without a Content-Length
        raise ApiError(
            413, "The request body is too large.", errors={"body": [f"At most {MAX_BODY_BYTES} bytes."]}
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400,
            "The request body is not valid JSON.",
            errors={"body": ["Invalid JSON body."]},
            type_="malformed",
        ) from None


@bp.post("/support/events")
def post_events() -> Response:
    """Record a beacon's events: 202 ``{"recorded", "dropped"}``; events with a bad, expired or
    preview ask are dropped (counted), a malformed beacon is a 4xx naming the field."""
    try:
        reported = events.parse_beacon(_beacon())
    except events.InvalidBeacon as exc:
        raise bad_request(exc.field, exc.message) from None
    outcome = events.record(current_db(), current_settings(), reported, clock.now())
    body = json.dumps({"recorded": outcome.recorded, "dropped": outcome.dropped})
    resp = Response(body, status=202, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp
