"""create_app(settings) -> Flask: the HTTP edge of every feature."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, current_app, render_template
from flask_smorest import Api, Blueprint
from marshmallow import RAISE
from webargs.flaskparser import FlaskParser

from paywall import __version__
from paywall.auth import KeyCache
from paywall.config import Settings, load_settings
from paywall.context import DB_KEY, SETTINGS_KEY
from paywall.db import Database
from paywall.errors import register_error_handlers
from paywall.schemas import READER_ID_PARAM_SCHEMA, ProblemSchema, ReaderIdConverter
from paywall.sections import check_serving, check_settings, log_startup_warnings

log = logging.getLogger("paywall")

# Feature modules with an ``init_app(app, api)``: each registers its blueprints, CLI-independent.
FEATURES = [
    "paywall.observability",
    "paywall.health",
    "paywall.readers.views",
    "paywall.access.views",
    "paywall.access.browser",
    "paywall.webhooks.views",
    "paywall.wellknown",
    "paywall.reports.views",
    "paywall.checkout.views",
    "paywall.checkout.pages",
    "paywall.account.views",
    "paywall.widget.views",
    "paywall.campaigns.views",
    "paywall.signin.views",
]


class StrictParser(FlaskParser):  # type: ignore[misc]
    """webargs' parser, but unknown query parameters are refused like unknown JSON fields:
    a misspelt filter (``?stauts=failed``) must not silently return everything."""

    DEFAULT_UNKNOWN_BY_LOCATION = {  # noqa: RUF012 - webargs reads this class attribute
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
        "querystring": RAISE,
    }


Blueprint.ARGUMENTS_PARSER = StrictParser()


class PaywallApi(Api):  # type: ignore[misc]
    """flask-smorest's Api with our problem schema as the documented error body ("Error")."""

    ERROR_SCHEMA = ProblemSchema


class ProblemContentPlugin(BasePlugin):
    """Document error answers as ``application/problem+json``, the media type they are sent with."""

    @staticmethod
    def _rename(response: dict[str, Any]) -> None:
        content = response.get("content")
        if isinstance(content, dict) and "application/json" in content:
            content["application/problem+json"] = content.pop("application/json")

    def response_helper(self, response: dict[str, Any], **kwargs: Any) -> None:
        # flask-smorest registers only error responses as components (422, default, ...).
        self._rename(response)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for code, response in (operation.get("responses") or {}).items():
                if isinstance(response, dict) and str(code)[0] in "45":
                    self._rename(response)


def configure_logging(settings: Settings) -> None:
    """JSON (or plain) lines on stderr at the configured level, each with its request id."""
    from paywall.observability import configure_logging as configure

    configure(settings.logging.level, json_logs=settings.logging.format == "json")


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> Flask:
    """Build the app. Tests pass their own settings and database; production reads the environment.

    Every settings section is built and checked first: a bad one raises ConfigError naming the key.
    """
    settings = settings or load_settings()
    check_settings(settings)
    check_serving(settings)
    configure_logging(settings)
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.server.max_body_bytes,
        JSON_SORT_KEYS=False,
        API_TITLE="paywall",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        # The human-readable page is ours (templates/docs.html): it needs no third-party script.
        OPENAPI_SWAGGER_UI_PATH=None,
        OPENAPI_REDOC_PATH=None,
        API_SPEC_OPTIONS={
            "info": {
                "description": "Donation and subscription paywall for independent publishers. "
                "Authenticate with `Authorization: Bearer KEY` (roles: site, finance, admin).",
            },
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        },
    )
    database = db or Database(
        settings.database.url,
        pool_size=settings.database.pool_size,
        lock_timeout_seconds=settings.database.lock_timeout_seconds,
    )
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[DB_KEY] = database
    app.extensions["paywall.keycache"] = KeyCache()

    app.url_map.converters["reader"] = ReaderIdConverter
    api = PaywallApi(app, spec_kwargs={"extra_plugins": [ProblemContentPlugin()]})
    api.register_converter(ReaderIdConverter, lambda _converter: dict(READER_ID_PARAM_SCHEMA))
    app.extensions["paywall.api"] = api

    for name in FEATURES:
        module: Any = importlib.import_module(name)
        if hasattr(module, "init_app"):
            module.init_app(app, api)
        else:
            api.register_blueprint(module.blp)

    # After flask-smorest's own handlers, so ours win: one error shape everywhere.
    register_error_handlers(app)

    @app.get("/docs")
    def docs() -> str:
        """A readable page of the API, rendered from the OpenAPI description."""
        spec = current_app.extensions["paywall.api"].spec.to_dict()
        return render_template("docs.html", spec=spec)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if resp.mimetype == "text/html":
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            )
            resp.headers.setdefault("X-Frame-Options", "DENY")
            resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    return app


def log_missing_settings(settings: Settings) -> None:
    """Say once, at start, which optional settings are missing and what will not work as set."""
    for item in settings.missing():
        log.warning("not configured: %s", item)
    log_startup_warnings(settings, log)
