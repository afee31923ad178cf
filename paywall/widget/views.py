"""The widget's routes (/support/*): its script and styles, the appeal and gate, Close, the hand-off.

- ``GET /support/widget.js`` and ``/support/widget.css``: static files with ETag (a 304 for an
  unchanged file), an hour of caching, and Cross-Origin-Resource-Policy for other origins' pages.
- ``GET /support/appeal?token=&return_to=``: the footer appeal, the meter line and the gate
  (paywall/widget/answers.py) for an access token, a site reader's or an anonymous browser's, in
  the copy of the experiment's variant the subject is in, each with its ``ask``;
  ``&preview=TOKEN`` answers a staff preview instead (paywall/experiments/preview.py).
- ``GET /support/preview``: a sample article with the widget, where staff preview links open.
- ``POST /support/dismiss`` ``{"token"}``: Close; hides the appeal (never the gate) for dismiss_days.
- ``POST /support/events``: the widget's beacons (paywall/widget/events.py).
- ``POST /support/handoff`` ``{"reader_token", "return_to"?}``: server mode, after signing in with a
  code in the gate: a one-time token for the site's ``[signin] return_url`` (never a reader token in
  a URL), so the site's backend learns the reader exactly as from a mailed link or /thanks.

The browser routes' origin check and CORS come from paywall/browser.py. No cookies anywhere.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, jsonify, render_template, request, send_from_directory
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
from paywall.experiments.goal import goal_text
from paywall.experiments.preview import InvalidPreview, Preview, verify_preview
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

bp = Blueprint("widget", __name__, template_folder="templates")
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


@bp.get("/support/preview.js")
def preview_js() -> Response:
    """The preview page's loader: loads the widget only with a preview link in the URL's hash."""
    return _static("preview.js")


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


def _preview(settings: Settings) -> Preview | None:
    """The staff preview ``?preview=`` asks for (None: not a preview); a bad one is a 422 naming it."""
    token = request.args.get("preview")
    if not token:
        return None
    try:
        return verify_preview(settings, token)
    except InvalidPreview as exc:
        raise ApiError(422, f"The preview is not valid: {exc}.", errors={"preview": [str(exc)]}) from None


def _gate(
    settings: Settings,
    subject: answers.Subject,
    links: dict[str, str],
    now: dt.datetime,
    preview: Preview | None,
) -> dict[str, Any]:
    """The gate with its experiment's copy and ask (a holdback sees the plain [gate] copy: the gate
    is access, it cannot be withheld)."""
    claims = subject.claims
    copy: dict[str, str] = {}
    name = arm = ""
    if preview is not None:
        name, arm, copy = preview.experiment.name, preview.variant.name, preview.variant.copy
        if not answers.gated(claims):
            # A preview shows the gate on any page: as if the meter were spent.
            claims = {**claims, "reason": "meter_exhausted"}
    else:
        assignment = assignment_for(settings, "gate", subject.key, now)
        if assignment is not None:
            name, arm = assignment.experiment.name, assignment.variant
            variant = assignment.experiment.variant(arm)
            copy = variant.copy if variant is not None else {}
    ask = encode_ask(settings, Ask("gate", name, arm, subject.key, now, preview=preview is not None))
    body = answers.gate_body(settings, claims, answers.with_ask(links, ask), copy)
    body.update(ask=ask, experiment=name, variant=arm)
    return body


def _footer(
    settings: Settings,
    subject: answers.Subject,
    links: dict[str, str],
    now: dt.datetime,
    body: dict[str, Any],
) -> None:
    """Add the footer appeal to ``body``: the variant's copy and an ask; a holdback gets only the ask."""
    experiment, arm = answers.footer_arm(settings, subject.claims)
    if subject.claims.get("appeal") is not True and arm != HOLDBACK:
        return  # hidden: a supporter, paused, dismissed, the ask budget, min_articles: no ask
    with current_db().transaction(readonly=True) as session:
        until = dismissed_until(session, settings, subject.key)
    if until is not None and until > now:
        # Closed on another device (or localStorage was cleared): stay hidden until it runs out.
        body["hidden_until"] = int(until.timestamp() * 1000)
        return
    name = experiment.name if experiment is not None else ""
    ask = encode_ask(settings, Ask("footer", name, arm, subject.key, now))
    body.update(ask=ask, experiment=name, variant=arm)
    if arm == HOLDBACK:
        return  # nothing shown; the widget still reports the view (the holdback's denominator)
    variant = experiment.variant(arm) if experiment is not None else None
    body.update(
        answers.appeal_copy(settings, answers.with_ask(links, ask), variant.copy if variant else None)
    )
    goal = goal_text(settings, current_db(), now)
    if goal:
        body["goal_text"] = goal


def _footer_preview(
    settings: Settings, subject: answers.Subject, links: dict[str, str], now: dt.datetime, preview: Preview
) -> dict[str, Any]:
    """The previewed footer variant, shown whatever the reader's arm or the experiment's dates."""
    name, arm = preview.experiment.name, preview.variant.name
    ask = encode_ask(settings, Ask("footer", name, arm, subject.key, now, preview=True))
    body = answers.appeal_copy(settings, answers.with_ask(links, ask), preview.variant.copy)
    body.update(ask=ask, experiment=name, variant=arm)
    goal = goal_text(settings, current_db(), now)
    if goal:
        body["goal_text"] = goal
    return body


@bp.get("/support/appeal")
def appeal() -> Any:
    """What the widget shows for ``?token=``: the gate for a denial, the appeal unless closed or not
    to be asked now; ``&preview=``: a staff preview of one variant (``preview: true``, never counted)."""
    settings = current_settings()
    try:
        subject = answers.token_subject(settings, request.args.get("token", ""))
    except signing.InvalidToken as exc:
        raise _unauthorized("token", exc) from None
    preview = _preview(settings)
    now = clock.now()
    token = request.args["token"]
    # A page URL we may not send readers back to is dropped, not refused: the gate still shows.
    links = answers.reader_links(settings, token, safe_return_url(settings, request.args.get("return_to")))
    body: dict[str, Any] = {
        "show": False,
        "dismiss_days": access_settings(settings).dismiss_days,
    }
    if settings.server.events_url:
        # Where the widget sends its beacons: the beacon intake ([server] events_url).
        body["events_url"] = settings.server.events_url
    claims = subject.claims
    if answers.gated(claims) or (preview is not None and preview.channel == "gate"):
        body["gate"] = _gate(settings, subject, links, now, preview)
    meter = answers.meter_text(settings, claims)
    if meter:
        body["meter_text"] = meter
    if preview is not None:
        body["preview"] = True
        if preview.channel == "footer":
            body.update(_footer_preview(settings, subject, links, now, preview))
        return _no_store(body)
    _footer(settings, subject, links, now, body)
    return _no_store(body)


@bp.get("/support/preview")
def preview_page() -> Any:
    """A plain page with a sample article, for staff previews (``paywall experiments preview``
    links here with ``#paywall_preview=TOKEN``). The token is in the URL's hash, which the browser
    never sends, so the page's loader (``preview.js``) looks at it and loads the widget in client
    mode only with a preview token: without one nothing runs (no meter read, no event)."""
    settings = current_settings()
    base = settings.server.public_url.rstrip("/")
    page = render_template(
        "widget/preview.html",
        widget_url=base + "/support/widget.js",
        loader_url=base + "/support/preview.js",
        site_url=None,
    )
    resp = Response(page, mimetype="text/html")
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["X-Robots-Tag"] = "noindex"
    return resp


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
    # The beacons: a few per page view, served in front of Flask with a limit per address of their
    # own (generous: one address may be a newsroom or a school behind one NAT), counted per worker.
    event_views.install(app)
