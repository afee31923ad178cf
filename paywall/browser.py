"""Routes a browser calls from the site's pages (/support/*): which origins may, and CORS.

CORS only stops a foreign page from *reading* an answer; a plain form POST still arrives. So every
state-changing browser route refuses a POST whose ``Origin`` is not one the operator allowed
(``server.allowed_origins``, or this service's own public URL), and answers are readable only by
the allowed origins. No cookies are involved: the widget sends tokens in the body.

``install(bp)`` applies both to every route of a blueprint whose path starts with /support/.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from paywall.config import Settings
from paywall.context import current_settings
from paywall.errors import ApiError

BROWSER_PREFIX = "/support/"


def own_origin(settings: Settings) -> str:
    parts = urlsplit(settings.server.public_url)
    return f"{parts.scheme}://{parts.netloc}"


def origin_allowed(settings: Settings, origin: str) -> bool:
    """Whether a page on ``origin`` may call the browser routes (allowed origins, or our own)."""
    return origin in settings.server.allowed_origins or origin == own_origin(settings)


def refuse_foreign_writes() -> Any:
    """before_request: a POST from an origin the operator has not allowed is a 403."""
    if request.method == "POST" and request.path.startswith(BROWSER_PREFIX):
        origin = request.headers.get("Origin")
        if origin and not origin_allowed(current_settings(), origin):
            raise ApiError(403, "This origin may not call the widget.", type_="forbidden")
    return None


def cors_headers(resp: Response) -> Response:
    """after_request: let the allowed origins read the answer (and preflight JSON POSTs)."""
    if not request.path.startswith(BROWSER_PREFIX):
        return resp
    resp.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin and origin in current_settings().server.allowed_origins:
        resp.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST"
            resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
            resp.headers["Access-Control-Max-Age"] = "600"
    return resp


def install(bp: Blueprint) -> None:
    """Apply the origin check and CORS to the browser routes of ``bp``."""
    bp.before_request(refuse_foreign_writes)
    bp.after_request(cors_headers)
