"""One error shape for every non-2xx JSON answer (RFC 9457 problem details).

``{"type", "title", "status", "detail", "errors": {field: [messages]}}`` with the media type
``application/problem+json``. Views raise ``ApiError`` (or let a schema fail); nothing hand-builds
an error body, and no stack trace ever reaches a client.
"""

from __future__ import annotations

import json as stdjson
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from paywall.db import is_transient

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://paywall.invalid/problems/"


class ApiError(Exception):
    """An error answer. ``errors`` maps each bad field to its messages."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Mapping[str, list[str]] | None = None,
        type_: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = dict(errors or {})
        self.type = type_
        self.title = title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def not_found(detail: str, field: str | None = None) -> ApiError:
    return ApiError(404, detail, errors={field: [detail]} if field else None, type_="not-found")


def bad_request(field: str, message: str, status: int = 422) -> ApiError:
    """A validation error on one field."""
    return ApiError(status, f"Invalid {field}: {message}", errors={field: [message]}, type_="validation")


def not_configured(setting: str, feature: str) -> ApiError:
    """503 for a feature whose setting is missing; the detail names the setting to set."""
    return ApiError(
        503,
        f"{feature} is not configured: set {setting}",
        type_="not-configured",
        extra={"setting": setting},
    )


def problem_body(
    status: int,
    detail: str,
    *,
    errors: Mapping[str, list[str]] | None = None,
    type_: str | None = None,
    title: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (type_ or phrase.lower().replace(" ", "-").replace("'", "")),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "errors": dict(errors or {}),
    }
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Mapping[str, list[str]] | None = None,
    type_: str | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    body = problem_body(status, detail, errors=errors, type_=type_, title=title, extra=extra)
    resp = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow messages (nested by location and field) as {"field.path": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            # Drop the location level (json, query, form, ...) that webargs adds.
            if not prefix and key in (
                "json",
                "query",
                "querystring",
                "form",
                "view_args",
                "headers",
                "files",
            ):
                out.update(flatten_messages(value, ""))
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "body"
            out.update(flatten_messages(value, name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            out.setdefault(prefix or "body", []).extend(messages)
        else:
            for item in messages:
                out.update(flatten_messages(item, prefix))
    elif messages is not None:
        out.setdefault(prefix or "body", []).append(str(messages))
    return out


def detail_for(errors: Mapping[str, list[str]], fallback: str) -> str:
    """A validation problem's detail: its first field's first message (``fallback`` with none)."""
    if not errors:
        return fallback
    field, msgs = next(iter(errors.items()))
    first = msgs[0] if msgs else "is invalid"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"Invalid {field}: {first}{more}"


# Shorter bodies can neither nest deeply enough to exhaust the recursion limit (about 1,000 levels)
# nor hold a number longer than int()'s 4,300 digits, so only longer ones are parsed ahead.
JSON_CHECK_MIN_BYTES = 900


def refuse_unparseable_json() -> None:
    """Before any view: a JSON body the parsers would crash on is a 400 problem, not a 500.

    webargs and Flask parse JSON with the standard library, which raises RecursionError on deep
    nesting and a bare ValueError on a number of more than 4,300 digits; neither is the
    JSONDecodeError they answer 400 for.
    """
    if not request.is_json:
        return
    data = request.get_data(cache=True)
    if len(data) < JSON_CHECK_MIN_BYTES:
        return
    try:
        stdjson.loads(data)
    except RecursionError:
        message = "Nested too deeply."
    except (stdjson.JSONDecodeError, UnicodeDecodeError):
        return  # plain bad JSON: the parser answers it as it always has
    except ValueError:
        message = "A number has too many digits."
    else:
        return
    raise ApiError(
        400, f"The request body is not usable JSON: {message}", errors={"body": [message]}, type_="malformed"
    )


def register_error_handlers(app: Flask) -> None:
    """Answer every error in the one shape."""

    app.before_request(refuse_unparseable_json)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return problem_response(
            exc.status,
            exc.detail,
            errors=exc.errors,
            type_=exc.type,
            title=exc.title,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        data = getattr(exc, "data", None) or {}
        messages = data.get("messages") if isinstance(data, Mapping) else None
        errors = flatten_messages(messages) if messages else {}
        if status == 400 and errors and any("Invalid JSON" in m for ms in errors.values() for m in ms):
            errors = {"body": ["Invalid JSON body."]}
            return problem_response(
                400, "The request body is not valid JSON.", errors=errors, type_="malformed"
            )
        if status == 422:
            return problem_response(
                422, detail_for(errors, "The request is invalid."), errors=errors, type_="validation"
            )
        if status == 413:
            return problem_response(
                413,
                "The request body is too large.",
                errors={"body": [f"At most {app.config.get('MAX_CONTENT_LENGTH')} bytes."]},
            )
        detail = exc.description or HTTPStatus(status).phrase
        headers = {}
        if status == 405 and exc.get_response().headers.get("Allow"):
            headers["Allow"] = exc.get_response().headers["Allow"]
        return problem_response(status, detail, errors=errors, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if is_transient(exc):
            log.warning(
                "transient database error on %s %s: %s", request.method, request.path, type(exc).__name__
            )
            return problem_response(
                503,
                "The database is unavailable; try again shortly.",
                type_="unavailable",
                headers={"Retry-After": "5"},
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "An internal error occurred; it has been logged.")
