"""create_app(settings) -> Flask: the HTTP edge of every feature."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, render_template

from paywall import __version__, health, observability, wellknown
from paywall.access import browser as access_browser
from paywall.access import views as access_views
from paywall.account import views as account_views
from paywall.api import PaywallApi, ProblemContentPlugin
from paywall.auth import KeyCache
from paywall.campaigns import views as campaigns_views
from paywall.checkout import pages as checkout_pages
from paywall.checkout import views as checkout_views
from paywall.config import Settings, load_settings
from paywall.context import DB_KEY, SETTINGS_KEY
from paywall.db import Database
from paywall.errors import register_error_handlers
from paywall.readers import views as readers_views
from paywall.reports import views as reports_views
from paywall.schemas import READER_ID_PARAM_SCHEMA, ReaderIdConverter
from paywall.sections import check_serving, check_settings, log_startup_warnings
from paywall.signin import views as signin_views
from paywall.webhooks import views as webhooks_views
from paywall.widget import views as widget_views

log = logging.getLogger("paywall")

# Pages load only this service's own resources (inline styles and data: images too) and are never framed.
HTML_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)


def configure_logging(settings: Settings) -> None:
    """JSON (or plain) lines on stderr at the configured level, each with its request id."""
    observability.configure_logging(settings.logging.level, json_logs=settings.logging.format == "json")


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> Flask:
    """Build the app. Tests pass their own settings and database; production reads the environment.

    Every settings section is built and checked first: a bad one raises ConfigError naming the key.
    """
    settings = settings or load_settings()
    check_settings(settings)
    check_serving(settings)
    configure_logging(settings)
    app = Flask(__name__)
    configure_app(app, settings)
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[DB_KEY] = db or Database(
        settings.database.url,
        pool_size=settings.database.pool_size,
        lock_timeout_seconds=settings.database.lock_timeout_seconds,
    )
    app.extensions["paywall.keycache"] = KeyCache()

    app.url_map.converters["reader"] = ReaderIdConverter
    api = PaywallApi(app, spec_kwargs={"extra_plugins": [ProblemContentPlugin()]})
    api.register_converter(ReaderIdConverter, lambda _converter: dict(READER_ID_PARAM_SCHEMA))
    app.extensions["paywall.api"] = api

    register_features(app, api)
    # After flask-smorest's own handlers, so ours win: one error shape everywhere.
    register_error_handlers(app)
    app.add_url_rule("/docs", view_func=docs)
    app.after_request(security_headers)
    return app


def configure_app(app: Flask, settings: Settings) -> None:
    """Flask's and flask-smorest's settings: the body size limit and how the API is described."""
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


def register_features(app: Flask, api: PaywallApi) -> None:
    """Each feature's routes, named here. Request ids and timing come first, so every route has them."""
    observability.init_app(app, api)
    api.register_blueprint(health.blp)
    api.register_blueprint(readers_views.blp)
    access_views.init_app(app, api)
    access_browser.init_app(app, api)
    webhooks_views.init_app(app, api)
    api.register_blueprint(wellknown.blp)
    reports_views.init_app(app, api)
    checkout_views.init_app(app, api)
    checkout_pages.init_app(app, api)
    account_views.init_app(app, api)
    widget_views.init_app(app, api)
    campaigns_views.init_app(app, api)
    signin_views.init_app(app, api)


def docs() -> str:
    """A readable page of the API, rendered from the OpenAPI description."""
    spec = current_app.extensions["paywall.api"].spec.to_dict()
    return render_template("docs.html", spec=spec)


def security_headers(resp: Response) -> Response:
    """Headers every answer carries; pages also get a CSP and may not be framed."""
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Content-Security-Policy", HTML_CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


def log_missing_settings(settings: Settings) -> None:
    """Say once, at start, which optional settings are missing and what will not work as set."""
    for item in settings.missing():
        log.warning("not configured: %s", item)
    log_startup_warnings(settings, log)
