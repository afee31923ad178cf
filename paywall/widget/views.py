"""The widget's routes (/support/*): its script and styles, the appeal and gate, Close, the hand-off.

- ``GET /support/widget.js`` and ``/support/widget.css``: static files with ETag (a 304 for an
  unchanged file), an hour of caching, and Cross-Origin-Resource-Policy for other origins' pages.
- ``GET /support/appeal?token=&return_to=``: the footer appeal, the meter line and the gate
  (paywall/widget/answers.py) for an access token, a site reader's or an anonymous browser's.
- ``POST /support/dismiss`` ``{"token"}``: Close; hides the appeal (never the gate) for dismiss_days.
- ``POST /support/events``: the widget's beacons (paywall/widget/events.py).
- ``POST /support/handoff`` ``{"reader_token", "return_to"?}``: server mode, after signing in with a
  code in the gate: a one-time token for the site's ``[signin] return_url`` (never a reader token in
  a URL), so the site's backend learns the reader exactly as from a mailed link or /thanks.

The browser routes' origin check and CORS come from paywall/browser.py. No cookies anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, jsonify, request, send_from_directory
from flask_smorest import Api
from sqlalchemy import select

from paywall import browser, clock, signing
from paywall.access.dismissals import dismiss_appeal, dismissed_until
from paywall.access.settings import access_settings
from paywall.checkout import limits
from paywall.checkout.settings import ratelimit_settings
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError
from paywall.experiments.asks import Ask, encode_ask
from paywall.experiments.assignment import assignment_for
from paywall.experiments.definition import HOLDBACK
from paywall.models import Reader
from paywall.signin import codes
from paywall.signin.returns import safe_return_url
from paywall.signin.settings import signin_settings
from paywall.signin.tokens import reader_from_token
from paywall.widget import answers
from paywall.widget import events as event_views

STATIC = Path(__file__).resolve().parent / "static"
# The widget files change only with a release; an hour of caching keeps article pages fast, and
# the ETag makes the revalidation after that hour a 304 without a body.
STATIC_MAX_AGE = 3600

bp = Blueprint("widget", __name__)
browser.install(bp)


def _static(name: str) -> Response:
    resp = send_from_directory(STATIC, name, max_age=STATIC_MAX_AGE)
    # Article pages on other origins load these as subresources.
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return resp


@bp.get("/support/widget.js")
def widget_js() -> Response:
    """The widget: ``<script src=".../support/widget.js" data-token="TOKEN" async>`` (server mode) or
    ``data-mode="client" data-article="ID"`` (client mode)."""
    return _static("widget.js")


@bp.get("/support/widget.css")
def widget_css() -> Response:
    return _static("widget.css")


def _no_store(body: dict[str, Any]) -> Response:
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def _unauthorized(field: str, exc: Exception | None = None) -> ApiError:
    detail = f"The {field} is not valid: {exc}." if exc else f"A valid {field} is required."
    return ApiError(401, detail, errors={field: ["Missing or not valid."]}, type_="unauthorized")


@bp.get("/support/appeal")
def appeal() -> Any:
    """What the widget shows for ``?token=``: the gate for a denial, the appeal unless closed."""
    settings = current_settings()
    try:
        subject = answers.token_subject(settings, request.args.get("token", ""))
    except signing.InvalidToken as exc:
        raise _unauthorized("token", exc) from None
    token = request.args["token"]
    # A page URL we may not send readers back to is dropped, not refused: the gate still shows.
    links = answers.reader_links(settings, token, safe_return_url(settings, request.args.get("return_to")))
    body: dict[str, Any] = {
        "show": False,
        "dismiss_days": access_settings(settings).dismiss_days,
    }
    claims = subject.claims
    if answers.gated(claims):
        body["gate"] = answers.gate_body(settings, claims, links)
        gate_ask, gate_copy = _interim_ask(settings, "gate", subject.key)
        body["gate"].update(gate_copy, **gate_ask)
    meter = answers.meter_text(settings, claims)
    if meter:
        body["meter_text"] = meter
    if claims.get("appeal") is not True:
        return _no_store(body)
    with current_db().transaction(readonly=True) as session:
        until = dismissed_until(session, settings, subject.key)
    if until is not None and until > clock.now():
        # Closed on another device (or localStorage was cleared): stay hidden until it runs out.
        body["hidden_until"] = int(until.timestamp() * 1000)
        return _no_store(body)
    footer, copy = _interim_ask(settings, "footer", subject.key)
    if footer["variant"] == HOLDBACK:
        return _no_store({**body, **footer})
    body.update(answers.appeal_copy(settings, links))
    body.update(copy, **footer)
    return _no_store(body)


def _interim_ask(settings: Settings, channel: str, subject: str) -> tuple[dict[str, str], dict[str, str]]:
    """INTERIM (issue 18, piece A): the ask, experiment, variant and variant copy of ``channel``,
    so the widget's events can be measured. Piece B1 owns the real appeal answer (ask budget,
    trace, preview, links carrying the ask) and replaces this function."""
    now = clock.now()
    assignment = assignment_for(settings, channel, subject, now)
    experiment = assignment.experiment.name if assignment else ""
    variant = assignment.variant if assignment else ""
    chosen = assignment.experiment.variant(variant) if assignment else None
    ask = encode_ask(settings, Ask(channel, experiment, variant, subject, now))
    return {"ask": ask, "experiment": experiment, "variant": variant}, dict(chosen.copy) if chosen else {}


def _posted(name: str) -> str | None:
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else request.form.get(name)
    return value if isinstance(value, str) else None


@bp.post("/support/dismiss")
def dismiss() -> Any:
    """Close: hide the appeal for this reader or browser for ``[access] dismiss_days`` (server side)."""
    settings = current_settings()
    try:
        subject = answers.token_subject(settings, _posted("token"))
    except signing.InvalidToken:
        raise _unauthorized("token") from None
    with current_db().transaction() as session:
        result = dismiss_appeal(session, settings, subject.key)
        until = dismissed_until(session, settings, subject.key)
    return _no_store(
        {
            "status": result,
            "dismiss_days": access_settings(settings).dismiss_days,
            "hidden_until": int(until.timestamp() * 1000) if until else None,
        }
    )


@bp.post("/support/handoff")
def handoff() -> Any:
    """``{"url"}``: where the widget sends a server-mode site's reader after signing in (null: nowhere)."""
    settings = current_settings()
    return_url = signin_settings(settings).return_url
    with current_db().transaction() as session:
        reader = reader_from_token(session, settings, _posted("reader_token"))
        if reader is None:
            raise _unauthorized("reader_token")
        if not return_url:
            return _no_store({"url": None})
        row = session.scalars(select(Reader).where(Reader.external_id == reader)).one()
        query = {"paywall_signin": codes.issue_return_token(session, settings, row, now=clock.now())}
    return_to = safe_return_url(settings, _posted("return_to"))
    if return_to:
        query["return_to"] = return_to
    separator = "&" if "?" in return_url else "?"
    return _no_store({"url": return_url + separator + urlencode(query)})


def init_app(app: Flask, api: Api) -> None:
    """Register the widget routes with their per-address limits (the static files are not limited)."""
    app.register_blueprint(bp)
    conf = ratelimit_settings(settings_of(app))
    for endpoint in ("widget.appeal", "widget.dismiss", "widget.handoff"):
        limits.limit(app, endpoint, per_address=conf.widget_per_address)
    # The beacons: a few per page view, so a limit of their own (generous: one address may be a
    # newsroom or a school behind one NAT).
    app.register_blueprint(event_views.bp)
    limits.limit(app, "widget_events.post_events", per_address=conf.events_per_address)
