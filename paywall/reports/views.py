"""HTTP for reports: GET /v1/reports/<report> (finance or admin) and the /reports page.

The report routes accept a Bearer key or the signed sign-in cookie of the /reports page (so the
page's download links work in a browser). Every export is logged with who asked and for what
(never the rows' personal data).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar, cast

from flask import (
    Blueprint as FlaskBlueprint,
)
from flask import (
    Flask,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_smorest import Api
from marshmallow import RAISE
from werkzeug.wrappers import Response as WerkzeugResponse

from paywall import clock, money
from paywall.api import Blueprint
from paywall.auth import authenticate, require_role, split_key
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError
from paywall.reports import websession
from paywall.reports.chart import revenue_charts
from paywall.reports.exporters import MEDIA_TYPES, export_chunks
from paywall.reports.payouts import missing, payout_lines
from paywall.reports.periods import Period, livemode_filter, next_bucket
from paywall.reports.revenue import revenue_report
from paywall.reports.schemas import (
    DonorsQuerySchema,
    PaymentsQuerySchema,
    PayoutsQuerySchema,
    RevenueQuerySchema,
    SubscriptionsQuerySchema,
)
from paywall.reports.service import filename, report_table, reporting_zone
from paywall.reports.settings import report_settings
from paywall.reports.subscriptions import active_counts

log = logging.getLogger(__name__)
# Payouts listed on the page, newest first (the download has them all).
PAGE_PAYOUTS = 10
F = TypeVar("F", bound=Callable[..., Any])

blp = Blueprint(
    "reports",
    __name__,
    url_prefix="/v1/reports",
    description="Finance reports: revenue, subscriptions, payments, payouts, donors (JSON, CSV, XLSX)",
)
page = FlaskBlueprint(
    "reports_page",
    __name__,
    url_prefix="/reports",
    template_folder="templates",
    static_folder="static",
)


def finance_access(view: F) -> F:
    """``@require_role("finance")``, or the signed /reports sign-in of a finance or admin key."""
    guarded = require_role("finance")(view)

    @functools.wraps(guarded)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "Authorization" not in request.headers and websession.COOKIE in request.cookies:
            caller = websession.signed_in_caller()
            if caller is not None:
                g.caller = caller
                return view(*args, **kwargs)
        return guarded(*args, **kwargs)

    return cast(F, wrapper)


def _export(name: str, args: dict[str, Any]) -> Response:
    """Run report ``name`` and stream it in the requested format as an attachment."""
    settings: Settings = current_settings()
    fmt = args["format"]
    tz = reporting_zone(settings)
    caller = getattr(g, "caller", None)
    log.info(
        "report export: %s as %s by key %r (%s)",
        name,
        fmt,
        caller.name if caller else None,
        {k: str(v) for k, v in args.items() if k != "format"},
    )
    db = current_db()
    meta: dict[str, Any] = {}

    def chunks() -> Generator[bytes, None, None]:
        # The transaction stays open while the body streams (a server-side cursor on
        # PostgreSQL); it closes when the last chunk is sent or the client goes away.
        with db.transaction(readonly=True) as session:
            table = report_table(session, name, args, settings)
            meta.update(table.meta)
            yield from export_chunks(table, fmt, tz)

    body = chunks()
    # Start the generator now, so a database error becomes an error answer, not a cut-off body.
    first = next(body, b"")

    def rest() -> Iterator[bytes]:
        yield first
        yield from body

    resp = Response(rest(), mimetype=MEDIA_TYPES[fmt].split(";")[0], direct_passthrough=True)
    # Closing the response (sent, or the client went away) ends the transaction at once.
    resp.call_on_close(body.close)
    resp.headers["Content-Type"] = MEDIA_TYPES[fmt]
    resp.headers["Cache-Control"] = "no-store"
    gaps = meta.get("missing")
    if gaps:
        # JSON carries this in its envelope and XLSX below the rows; a CSV row would break every
        # reader that sums the columns, so CSV (and every format) says it in a header.
        resp.headers["Paywall-Missing"] = (
            f"payments={gaps['payments']}; without_fee={gaps['without_fee']}; "
            f"without_payout={gaps['without_payout']}; fill={gaps['command']}"
        )
    if fmt != "json":
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename(name, args, fmt)}"'
    return resp


_DOC_RESPONSES = {
    "200": {
        "description": "The report: JSON (amounts in minor units), CSV or XLSX (major units). JSON's "
        "`missing` (and a note below the XLSX rows) says how many payments of the period have no fee "
        "or payout yet and the command that fills them.",
        "content": {mt.split(";")[0]: {} for mt in MEDIA_TYPES.values()},
        "headers": {
            "Paywall-Missing": {
                "description": "Payments of the period without a fee or payout yet, and the command "
                "that fills them: `payments=N; without_fee=N; without_payout=N; fill=paywall stripe sync`.",
                "schema": {"type": "string"},
            }
        },
    },
    "422": {"description": "A bad parameter, named in `errors`."},
}


@blp.route("/revenue")
@finance_access
@blp.arguments(RevenueQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_DOC_RESPONSES)
def revenue(args: dict[str, Any]) -> Response:
    """Gross, refunds, disputes, fees and net per period (or kind, plan, campaign) and currency."""
    return _export("revenue", args)


@blp.route("/subscriptions")
@finance_access
@blp.arguments(SubscriptionsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_DOC_RESPONSES)
def subscriptions(args: dict[str, Any]) -> Response:
    """Active subscribers at each period's end, new, churned, trialing, paused and MRR per plan and currency."""
    return _export("subscriptions", args)


@blp.route("/payments")
@finance_access
@blp.arguments(PaymentsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_DOC_RESPONSES)
def payments(args: dict[str, Any]) -> Response:
    """One line per payment with its Stripe ids, refunds, disputes and fees (streamed)."""
    return _export("payments", args)


@blp.route("/donors")
@finance_access
@blp.arguments(DonorsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_DOC_RESPONSES)
def donors(args: dict[str, Any]) -> Response:
    """Each donor's gifts in a year, net of refunds, per currency (for tax receipts)."""
    return _export("donors", args)


@blp.route("/payouts")
@finance_access
@blp.arguments(PayoutsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_DOC_RESPONSES)
def payouts(args: dict[str, Any]) -> Response:
    """Each payout arriving in the period against its balance transactions by type, with the difference."""
    return _export("payouts", args)


# ---- the page ---------------------------------------------------------------------------


def _last_twelve_months(today: dt.date, settings: Settings) -> Period:
    first = today.replace(day=1)
    start = first
    for _ in range(11):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    return Period(start, next_bucket(first, "month"), reporting_zone(settings))


def _render(data: dict[str, Any], template: str, status: int = 200, **context: Any) -> Response:
    token = websession.csrf_token(data)
    resp = make_response(render_template(template, csrf_token=token, **context), status)
    resp.headers["Cache-Control"] = "no-store"
    websession.save(resp, data)
    return resp


@page.get("")
def dashboard() -> Response:
    """The finance page: the sign-in form, or the chart, subscriber counts and downloads."""
    data = websession.load()
    caller = websession.signed_in_caller(data)
    if caller is None:
        data.pop("kid", None)
        return _render(data, "reports/sign_in.html", error=None)
    settings: Settings = current_settings()
    tz = reporting_zone(settings)
    now = clock.now()
    today = now.astimezone(tz).date()
    period = _last_twelve_months(today, settings)
    livemode = livemode_filter(settings)
    with current_db().transaction(readonly=True) as session:
        report = revenue_report(session, period, "month", livemode)
        counts = active_counts(session, now, livemode)
        payout_rows = payout_lines(session, period, livemode)
        gaps = missing(session, period, livemode)
    month_start = today.replace(day=1)
    links = _download_links(period, month_start, today.year)
    return _render(
        data,
        "reports/dashboard.html",
        caller=caller,
        charts=revenue_charts(report.rows),
        totals=report.totals,
        counts=counts,
        period=period,
        links=links,
        timezone=tz.key,
        livemode={True: "live", False: "test", None: "all"}[livemode],
        mode_source=_mode_source(settings),
        payouts=list(reversed(payout_rows))[:PAGE_PAYOUTS],
        payout_count=len(payout_rows),
        missing=gaps,
        money=money.display,
        tz=tz,
        today=today,
    )


def _mode_source(settings: Settings) -> str:
    """Why the page shows the mode it shows."""
    configured = report_settings(settings).livemode
    if configured != "auto":
        return f"set by reports.livemode = {configured}"
    if settings.stripe_livemode is None:
        return "no Stripe key is configured, so both modes"
    return "the mode of the configured Stripe key"


def _download_links(period: Period, month_start: dt.date, year: int) -> list[dict[str, Any]]:
    s, e = period.start.isoformat(), period.end.isoformat()
    this_month = (month_start.isoformat(), next_bucket(month_start, "month").isoformat())

    def fmts(endpoint: str, formats: tuple[str, ...] = ("csv", "xlsx", "json"), **params: Any) -> list[Any]:
        return [(f, url_for(endpoint, format=f, **params)) for f in formats]

    return [
        {
            "title": "Revenue by month, last 12 months",
            "links": fmts("reports.revenue", start=s, end=e, group_by="month"),
        },
        {
            "title": "Revenue by kind, last 12 months",
            "links": fmts("reports.revenue", start=s, end=e, group_by="kind"),
        },
        {
            "title": "Revenue by plan, last 12 months",
            "links": fmts("reports.revenue", start=s, end=e, group_by="plan"),
        },
        {
            "title": "Revenue by campaign, last 12 months",
            "links": fmts("reports.revenue", start=s, end=e, group_by="campaign"),
        },
        {
            "title": "Subscriptions by month, last 12 months",
            "links": fmts("reports.subscriptions", start=s, end=e),
        },
        {
            "title": "Payments this month",
            "links": fmts("reports.payments", start=this_month[0], end=this_month[1]),
        },
        {
            "title": "Payments, last 12 months",
            "links": fmts("reports.payments", ("csv", "xlsx"), start=s, end=e),
        },
        {
            "title": "Payouts, last 12 months",
            "links": fmts("reports.payouts", start=s, end=e),
        },
        {"title": f"Donors {year}", "links": fmts("reports.donors", year=year)},
        {"title": f"Donors {year - 1}", "links": fmts("reports.donors", year=year - 1)},
    ]


@page.post("/sign-in")
def sign_in() -> WerkzeugResponse:
    """Check the CSRF token and the finance key, then open a session and put its token in the cookie."""
    data = websession.load()
    if not websession.csrf_ok(data, request.form.get("csrf_token")):
        data.pop("csrf", None)
        return _render(data, "reports/sign_in.html", 400, error="The form expired; please sign in again.")
    key = (request.form.get("key") or "").strip()
    try:
        caller = authenticate(f"Bearer {key}")
    except ApiError as exc:
        if exc.status == 429:  # too many failed keys from this address (auth_failures_per_address)
            throttled = _render(
                data,
                "reports/sign_in.html",
                429,
                error="Too many failed sign-ins from here; wait and try again.",
            )
            throttled.headers["Retry-After"] = exc.headers.get("Retry-After", "60")
            return throttled
        return _render(data, "reports/sign_in.html", 401, error="That key is not valid.")
    if caller.role not in websession.FINANCE_ROLES:
        return _render(
            data, "reports/sign_in.html", 403, error="That key may not see reports (needs finance)."
        )
    parts = split_key(key)
    if parts is None:  # authenticate() accepted it, so it is well formed
        return _render(data, "reports/sign_in.html", 401, error="That key is not valid.")
    log.info("reports sign-in by key %r", caller.name)
    # A new session and a fresh CSRF token with every sign-in, so a token seen before is worth nothing after.
    new = websession.open_session(parts[0])
    resp = redirect(url_for("reports_page.dashboard"), 303)
    websession.save(resp, new)
    return resp


@page.post("/sign-out")
def sign_out() -> WerkzeugResponse:
    data = websession.load()
    resp = redirect(url_for("reports_page.dashboard"), 303)
    if websession.csrf_ok(data, request.form.get("csrf_token")):
        websession.end_session(data)
        websession.clear(resp)
    return resp


def init_app(app: Flask, api: Api) -> None:
    """Register the report API and the /reports page, and derive the sign-in cookie's signer."""
    settings = settings_of(app)
    websession.init_session(app, settings)
    api.register_blueprint(blp)
    app.register_blueprint(page)
