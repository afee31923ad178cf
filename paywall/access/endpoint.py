"""``POST /v1/access`` answered in front of Flask (paywall/front.py): every article view of a
server-mode site waits for it, and Flask's per-request machinery (request context, hooks,
flask-smorest's argument parsing) cost as much CPU as the check itself (docs/benchmarks.md).

The contract is the Flask route's, to the byte where it can be (paywall/access/views.py keeps the
flask-smorest declaration, so the OpenAPI description is unchanged; tests/access/test_endpoint.py
sends the same good and bad requests to both and compares the answers). In the Flask route's order:

1. a JSON body is read first (a 413 past ``[server] max_body_bytes``), and one the parsers would
   crash on (deep nesting, a number of too many digits) is a 400 before the key is looked at, as
   errors.py's ``refuse_unparseable_json`` answers it;
2. the key: 401 / 429 (the failed-key throttle of paywall/checkout/limits.py, counted per client
   address as for every other route) / 403, through auth.py's ``check_key``, with the same key cache;
3. the body: not JSON (by media type) or empty is ``{}``; bad JSON a 400; then
   ``AccessRequestSchema`` loads it, so the schema stays the one source of the rules and the
   messages (a 422 naming each field, as webargs and errors.py render it);
4. ``answer``, which the Flask route calls too: the decision, and its token when not allowed.

Methods other than POST go on to Flask (OPTIONS, and the 405 with ``Allow``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask
from marshmallow import ValidationError

from paywall import clock, front
from paywall.access import service
from paywall.access.schemas import AccessRequestSchema
from paywall.access.tokens import sign_decision
from paywall.auth import check_key, check_role
from paywall.checkout import limits
from paywall.checkout.settings import ratelimit_settings
from paywall.clock import isoformat
from paywall.config import Settings
from paywall.context import db_of, settings_of
from paywall.db import Database
from paywall.errors import JSON_CHECK_MIN_BYTES, ApiError, detail_for, flatten_messages

PATH = "/v1/access"
NO_STORE = ("Cache-Control", "private, no-store")
# One instance: building a marshmallow schema costs more than loading a body with it.
REQUEST_SCHEMA = AccessRequestSchema()


def answer(db: Database, settings: Settings, data: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The body of ``POST /v1/access`` for a loaded request (``AccessRequestSchema``)."""
    reader, article, level = data["reader"], data["article"], data["level"]
    # One statement reads the state; only a first metered read then claims a meter slot, a second.
    # Both stand alone (no transaction) and are safe to repeat, so the check runs on the
    # retrying autocommit path of paywall/db/engine.py (see paywall/access/meter.py for why it is exact).
    decision = db.run_idempotent(
        lambda conn: service.evaluate(conn, settings, reader, article, now, record=True, level=level)
    )
    body = service.answer_body(reader, article, decision, explain=data["explain"])
    if not decision.allowed:
        # Server mode: the site renders the excerpt and passes this to the widget, which shows the gate.
        token, expires = sign_decision(settings, reader, decision, now, article=article)
        body.update(token=token, token_expires_at=isoformat(expires))
    return body


def unusable_json(raw: bytes) -> ApiError | None:
    """errors.py's ``refuse_unparseable_json``: the 400 for a body the parsers would crash on."""
    if len(raw) < JSON_CHECK_MIN_BYTES:
        return None  # too short to nest that deep or to hold that many digits
    try:
        json.loads(raw)
    except RecursionError:
        message = "Nested too deeply."
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # plain bad JSON: answered as such after the key check
    except ValueError:
        message = "A number has too many digits."
    else:
        return None
    return ApiError(
        400, f"The request body is not usable JSON: {message}", errors={"body": [message]}, type_="malformed"
    )


def load_body(raw: bytes | None) -> Any:
    """The request's JSON as webargs reads it: no JSON body (``raw`` None, or empty) is ``{}``."""
    return front.parse_json(raw) if raw else {}


def validate(body: Any) -> dict[str, Any]:
    """``body`` loaded by ``AccessRequestSchema``, else the 422 the Flask route answers."""
    try:
        data: dict[str, Any] = REQUEST_SCHEMA.load(body)
    except ValidationError as exc:
        errors = flatten_messages(exc.messages)
        raise ApiError(
            422, detail_for(errors, "The request is invalid."), errors=errors, type_="validation"
        ) from None
    return data


class AccessEndpoint:
    """POST /v1/access as a handler for paywall/front.py."""

    def __init__(self, flask_app: Flask) -> None:
        self.app = flask_app
        self.settings = settings_of(flask_app)
        self.db = db_of(flask_app)
        self.max_body = self.settings.server.max_body_bytes
        self.proxy_hops = ratelimit_settings(self.settings).proxy_hops

    def route(self) -> front.Route:
        return front.Route(PATH, {"POST": self.post}, others_to_app=True)

    def post(self, environ: front.Environ) -> front.Answer:
        raw = None
        if front.is_json(front.media_type(environ)):
            raw = front.read_body(environ, self.max_body)
            refused = unusable_json(raw)
            if refused is not None:
                raise refused
        caller = check_key(
            self.app,
            environ.get("HTTP_AUTHORIZATION"),
            lambda: limits.address_of(environ, self.proxy_hops),
        )
        check_role(caller, ("site",))
        data = validate(load_body(raw))
        body = answer(self.db, self.settings, data, clock.now())
        # As Flask's JSON answers: sorted keys, compact, a final newline.
        text = json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"
        return 200, text.encode(), [("Content-Type", "application/json"), NO_STORE]


def install(app: Flask) -> None:
    """Serve POST /v1/access in front of ``app``'s Flask machinery."""
    front.install(app, AccessEndpoint(app).route())
