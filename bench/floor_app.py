"""The production app plus two bench-only routes: the floor under POST /v1/access.

``bench/access.py --floor`` serves this instead of ``paywall.wsgi:app`` (same gunicorn settings)
and measures both routes beside GET /healthz, to show how much of the access check's cost is the
database work that no implementation of the rules can skip, on this machine:

- ``POST /bench/floor/read``: parse the JSON body, run the state query and the rules (``peek``);
  a fixed answer. No key check, no validation, no meter write.
- ``POST /bench/floor/check``: the same, then spend the free article as the real check must
  (``evaluate``, the meter slot claim) and answer with the real body (``json.dumps``).

Never mounted by the service itself: these routes have no authentication.
"""

from __future__ import annotations

import json

from flask import Response, request

from paywall import clock
from paywall.access import service
from paywall.context import current_db, current_settings
from paywall.wsgi import app

FIXED = b'{"allowed": true}'


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


app.add_url_rule("/bench/floor/read", "bench_floor_read", floor_read, methods=["POST"])
app.add_url_rule("/bench/floor/check", "bench_floor_check", floor_check, methods=["POST"])
