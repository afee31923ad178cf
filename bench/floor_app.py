"""The production app plus bench-only routes: the floors under POST /v1/access and the webhook.

``bench/access.py --floor`` serves this instead of ``paywall.wsgi:app`` (same gunicorn settings)
and measures both routes beside GET /healthz, to show how much of the access check's cost is the
database work that no implementation of the rules can skip, on this machine:

- ``POST /bench/floor/read``: parse the JSON body, run the state query and the rules (``peek``);
  a fixed answer. No key check, no validation, no meter write.
- ``POST /bench/floor/check``: the same, then spend the free article as the real check must
  (``evaluate``, the meter slot claim) and answer with the real body (``json.dumps``).

``bench/webhooks.py`` serves it for its floor under ``POST /webhooks/stripe``:

- ``POST /bench/floor/webhook``: verify the Stripe signature exactly as the real endpoint does
  (``inbox.verify``), insert the raw body once under its event id (``bench_floor_events``, which
  bench/webhooks.py creates; a duplicate changes nothing) and answer 200. Nothing is applied.

Never mounted by the service itself: these routes have no authentication.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Response, request
from sqlalchemy import Engine, create_engine, text

from paywall import clock
from paywall.access import service
from paywall.context import current_db, current_settings
from paywall.webhooks import inbox
from paywall.wsgi import app

FIXED = b'{"allowed": true}'
RECEIVED = b'{"received": true}'

_FLOOR_INSERT = text(
    "INSERT INTO bench_floor_events (id, body) VALUES (:id, :body) ON CONFLICT (id) DO NOTHING"
)


def floor_read() -> Response:
    body = json.loads(request.get_data())
    settings, now = current_settings(), clock.now()
    current_db().run_idempotent(
        lambda conn: service.peek(conn, settings, body["reader"], body["article"], now)
    )
    return Response(FIXED, mimetype="application/json")


def floor_check() -> Response:
    body = json.loads(request.get_data())
    reader, article = body["reader"], body["article"]
    settings, now = current_settings(), clock.now()
    decision = current_db().run_idempotent(
        lambda conn: service.evaluate(conn, settings, reader, article, now, record=True)
    )
    answer = json.dumps(service.answer_body(reader, article, decision))
    return Response(answer, mimetype="application/json")


_engines: dict[int, Engine] = {}


def _floor_engine() -> Engine:
    """This worker's pool for the webhook floor: one autocommit INSERT per event, one round trip.

    Not ``run_idempotent``'s pool: that one commits without waiting for the WAL flush (fine for
    the meter), and the floor must record the event durably, as the real endpoint does.
    """
    engine = _engines.get(os.getpid())
    if engine is None:
        url = current_db().url
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_size": 5, "max_overflow": 5}
        if url.startswith("sqlite"):
            kwargs = {
                "isolation_level": "AUTOCOMMIT",
                "connect_args": {"timeout": 5, "check_same_thread": False},
            }
        engine = _engines[os.getpid()] = create_engine(url, hide_parameters=True, **kwargs)
    return engine


def floor_webhook() -> Response:
    settings = current_settings()
    raw = request.get_data(cache=False)
    try:
        event = inbox.verify(
            raw,
            request.headers.get("Stripe-Signature"),
            settings.secrets.stripe_webhook_secrets,
            settings.stripe.webhook_tolerance_seconds,
        )
    except inbox.InvalidEvent as exc:
        return Response(json.dumps({"error": exc.message}), status=400, mimetype="application/json")
    values = {"id": str(event["id"]), "body": raw.decode()}
    with _floor_engine().connect() as conn:
        conn.execute(_FLOOR_INSERT, values)
    return Response(RECEIVED, mimetype="application/json")


app.add_url_rule("/bench/floor/read", "bench_floor_read", floor_read, methods=["POST"])
app.add_url_rule("/bench/floor/check", "bench_floor_check", floor_check, methods=["POST"])
app.add_url_rule("/bench/floor/webhook", "bench_floor_webhook", floor_webhook, methods=["POST"])
