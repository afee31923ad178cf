"""Routes answered in front of Flask: the few hot paths where Flask's per-request machinery costs
more than the work itself.

An article view can mean an access check and an appeal beacon, and a renewal day thousands of
Stripe deliveries a minute; for those routes the request context, the before/after-request hooks,
flask-smorest's argument parsing and Flask-Limiter cost as much CPU as the route's own work (see
docs/benchmarks.md). ``FrontRoutes`` is a small WSGI dispatcher wrapped around ``app.wsgi_app``: a
request for one of its paths is answered by a plain handler, every other request goes on to Flask
untouched.

What Flask's hooks give the other routes, this keeps: the request id (``X-Request-ID``, taken from
the caller when well formed, in the logs through ``request_id_var``), the request latency histogram
under the route's template, ``nosniff``, one problem+json error shape (paywall/errors.py), a 503 with
``Retry-After`` for a transient database error and a logged 500 for anything else, never a stack
trace. Handlers are plain functions of the WSGI environ, so they stay testable through the same test
client as every other route.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from paywall.db import is_transient
from paywall.errors import ApiError, problem_body
from paywall.observability import _REQUEST_ID_OK, REQUEST_ID_HEADER, REQUEST_LATENCY, request_id_var

# app.extensions key: the FrontRoutes of an app, and the (method, path) pairs it answers (not in
# app.url_map: the docs' route check reads these).
FRONT = "paywall.front"
FRONT_ROUTES = "paywall.front_routes"

log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]
# What a handler returns: status, body bytes, headers (Content-Length and the common ones are added).
Answer = tuple[int, bytes, Headers]
Environ = dict[str, Any]
Handler = Callable[[Environ], Answer]


@dataclass(frozen=True)
class Route:
    path: str
    handlers: Mapping[str, Handler]  # method -> handler
    # Headers every answer of the route carries, errors included (CORS for the browser routes).
    extra_headers: Callable[[Environ], Headers] | None = None
    # Methods without a handler go on to Flask (a route Flask also serves: its OPTIONS and 405).
    others_to_app: bool = False

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.handlers))


def problem(exc: ApiError) -> Answer:
    """The problem+json answer of ``exc`` (as paywall/errors.py's handler renders it)."""
    body = problem_body(
        exc.status, exc.detail, errors=exc.errors, type_=exc.type, title=exc.title, extra=exc.extra
    )
    headers = [("Content-Type", "application/problem+json"), *exc.headers.items()]
    return exc.status, json.dumps(body).encode(), headers


def json_answer(status: int, body: Any, headers: Headers | None = None) -> Answer:
    return status, json.dumps(body).encode(), [("Content-Type", "application/json"), *(headers or [])]


def read_body(environ: Environ, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (else a 413 naming ``body``)."""
    too_large = ApiError(413, "The request body is too large.", errors={"body": [f"At most {limit} bytes."]})
    # As werkzeug reads a body: a valid Content-Length says how much; without one (or with a bad
    # one) the stream is read only where the server marks it terminated (gunicorn does, for a
    # chunked body); otherwise there is no body, as reading on would wait for bytes never sent.
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    length = int(declared) if declared.isdigit() else None
    if length is not None and length > limit:
        raise too_large
    stream = environ["wsgi.input"]
    if length is not None:
        raw: bytes = stream.read(length) if length else b""
    elif environ.get("wsgi.input_terminated"):
        raw = stream.read(limit + 1)  # one byte past the limit, to know
    else:
        raw = b""
    if len(raw) > limit:
        raise too_large
    return raw


def media_type(environ: Environ) -> str:
    return str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()


def is_json(media_type: str) -> bool:
    """Whether Flask and webargs read a body of ``media_type`` as JSON (so the front routes do too)."""
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, else the 400 every JSON route answers. UTF-8 only, as webargs reads a body
    (not json's guess at UTF-16 or UTF-32)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(
            400,
            "The request body is not valid JSON.",
            errors={"body": ["Invalid JSON body."]},
            type_="malformed",
        ) from None


class FrontRoutes:
    """WSGI: the registered paths answered here; everything else passed to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.routes: dict[str, Route] = {}

    def add(self, route: Route) -> None:
        self.routes[route.path] = route

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if route is None or (route.others_to_app and method not in route.handlers):
            return self.app(environ, start_response)
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            status, body, headers = self.answer(route, method, environ)
            headers += [
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
                (REQUEST_ID_HEADER, rid),
            ]
            if route.extra_headers is not None:
                headers += route.extra_headers(environ)
            start_response(f"{status} {_phrase(status)}", headers)
            REQUEST_LATENCY.labels(method, route.path, str(status)).observe(time.perf_counter() - started)
            return [body]
        finally:
            request_id_var.reset(token)

    def answer(self, route: Route, method: str, environ: Environ) -> Answer:
        handler = route.handlers.get(method)
        try:
            if handler is None:
                raise ApiError(
                    405,
                    "The method is not allowed for the requested URL.",
                    headers={"Allow": route.allow},
                )
            return handler(environ)
        except ApiError as exc:
            return problem(exc)
        except Exception as exc:  # one error shape, never a stack trace (as errors.py's handler)
            if is_transient(exc):
                log.warning("transient database error on %s %s: %s", method, route.path, type(exc).__name__)
                return problem(
                    ApiError(
                        503,
                        "The database is unavailable; try again shortly.",
                        type_="unavailable",
                        headers={"Retry-After": "5"},
                    )
                )
            log.exception("unhandled error on %s %s", method, route.path)
            return problem(ApiError(500, "An internal error occurred; it has been logged."))


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def front_of(app: Flask) -> FrontRoutes:
    """The app's FrontRoutes, wrapped around ``app.wsgi_app`` the first time it is asked for."""
    front: FrontRoutes | None = app.extensions.get(FRONT)
    if front is None:
        front = FrontRoutes(app.wsgi_app)
        app.wsgi_app = front  # type: ignore[method-assign]
        app.extensions[FRONT] = front
    return front


def install(app: Flask, route: Route) -> None:
    """Answer ``route`` in front of ``app``'s Flask machinery."""
    front_of(app).add(route)
    app.extensions.setdefault(FRONT_ROUTES, set()).update((m, route.path) for m in route.handlers)
