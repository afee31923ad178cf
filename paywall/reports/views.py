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
from dataclasses import dataclass
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
from paywall.errors import ApiError, bad_request
from paywall.experiments import stats
from paywall.experiments.results import COLUMNS as EXPERIMENT_COLUMNS
from paywall.experiments.results import experiment_results
from paywall.reports import websession
from paywall.reports.campaigns import COLUMNS as CAMPAIGN_COLUMNS
from paywall.reports.campaigns import campaign_results
from paywall.reports.chart import revenue_charts
from paywall.reports.donors import COLUMNS as DONOR_COLUMNS
from paywall.reports.experiments_page import counted_text, experiment_sections
from paywall.reports.exporters import MEDIA_TYPES, export_chunks
from paywall.reports.payments import COLUMNS as PAYMENT_COLUMNS
from paywall.reports.payouts import COLUMNS as PAYOUT_COLUMNS
from paywall.reports.payouts import missing, payout_lines
from paywall.reports.periods import TIME_GROUPS, Period, livemode_filter, next_bucket
from paywall.reports.revenue import GROUPS, revenue_report
from paywall.reports.schemas import (
    KINDS,
    CampaignsQuerySchema,
    DonorsQuerySchema,
    ExperimentsQuerySchema,
    PaymentsQuerySchema,
    PayoutsQuerySchema,
    RevenueQuerySchema,
    SubscriptionsQuerySchema,
)
from paywall.reports.service import (
    REVENUE_COLUMNS,
    filename,
    report_table,
    reporting_zone,
    unknown_experiment,
)
from paywall.reports.settings import report_settings
from paywall.reports.subscriptions import COLUMNS as SUBSCRIPTION_COLUMNS
from paywall.reports.subscriptions import active_counts
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, NUMBER, RATIO, TEXT, Column

log = logging.getLogger(__name__)
# Payouts listed on the page, newest first (the download has them all).
PAGE_PAYOUTS = 10
F = TypeVar("F", bound=Callable[..., Any])

blp = Blueprint(
    "reports",
    __name__,
    url_prefix="/v1/reports",
    description="Finance reports: revenue, subscriptions, payments, payouts, donors, campaigns, appeal "
    "experiments (JSON, CSV, XLSX)",
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


# JSON types of each column kind in the OpenAPI description (any cell may be empty).
_JSON_TYPES = {
    TEXT: {"type": ["string", "null"]},
    MONEY: {"type": ["integer", "null"], "description": "Minor units of the row's currency."},
    INT: {"type": ["integer", "null"]},
    BOOL: {"type": ["boolean", "null"]},
    DATETIME: {"type": ["string", "null"], "format": "date-time"},
    RATIO: {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    NUMBER: {"type": ["number", "null"]},
}


def _doc_responses(columns: list[Column]) -> dict[str, Any]:
    """The documented answers of a report route: its JSON rows typed from the table's columns."""
    row = {
        "type": "object",
        "properties": {c.key: _JSON_TYPES[c.kind] for c in columns},
        "required": [c.key for c in columns],
    }
    body = {
        "type": "object",
        "description": "The filters and period that made the report, then its rows and per-currency totals.",
        "properties": {"report": {"type": "string"}, "rows": {"type": "array", "items": row},
                       "totals": {"type": "array", "items": row}},
        "required": ["report", "rows", "totals"],
    }  # fmt: skip
    return {
        "200": {
            "description": "The report: JSON (amounts in minor units), CSV or XLSX (major units). JSON's "
            "`missing` (and a note below the XLSX rows) says how many payments of the period have no fee "
            "or payout yet and the command that fills them.",
            "content": {
                mt.split(";")[0]: ({"schema": body} if fmt == "json" else {})
                for fmt, mt in MEDIA_TYPES.items()
            },
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
@blp.doc(responses=_doc_responses(REVENUE_COLUMNS))
def revenue(args: dict[str, Any]) -> Response:
    """Gross, refunds, disputes, fees and net per period (or kind, plan, campaign) and currency."""
    return _export("revenue", args)


@blp.route("/subscriptions")
@finance_access
@blp.arguments(SubscriptionsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(SUBSCRIPTION_COLUMNS))
def subscriptions(args: dict[str, Any]) -> Response:
    """Active subscribers at each period's end, new, churned, trialing, paused and MRR per plan and currency."""
    return _export("subscriptions", args)


@blp.route("/payments")
@finance_access
@blp.arguments(PaymentsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(PAYMENT_COLUMNS))
def payments(args: dict[str, Any]) -> Response:
    """One line per payment with its Stripe ids, refunds, disputes and fees (streamed)."""
    return _export("payments", args)


@blp.route("/donors")
@finance_access
@blp.arguments(DonorsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(DONOR_COLUMNS))
def donors(args: dict[str, Any]) -> Response:
    """Each donor's gifts in a year, net of refunds, per currency (for tax receipts)."""
    return _export("donors", args)


@blp.route("/campaigns")
@finance_access
@blp.arguments(CampaignsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(CAMPAIGN_COLUMNS))
def campaigns(args: dict[str, Any]) -> Response:
    """Per campaign and currency: donations and subscriptions started, count, total, average, recurring share."""
    return _export("campaigns", args)


@blp.route("/payouts")
@finance_access
@blp.arguments(PayoutsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(PAYOUT_COLUMNS))
def payouts(args: dict[str, Any]) -> Response:
    """Each payout arriving in the period against its balance transactions by type, with the difference."""
    return _export("payouts", args)


@blp.route("/experiments")
@finance_access
@blp.arguments(ExperimentsQuerySchema, location="query", unknown=RAISE)
@blp.doc(responses=_doc_responses(EXPERIMENT_COLUMNS))
def experiments(args: dict[str, Any]) -> Response:
    """Appeal experiments: per experiment, arm and currency: readers, views, impressions, clicks,
    payments, conversions, revenue, revenue per reader and per 1,000 readers, views and impressions
    with 95 % intervals, lift over holdback and P(best) per reader, trust (interim before the end);
    the counts as the last fold left them (``counted_up_to``)."""
    settings: Settings = current_settings()
    problem = unknown_experiment(settings, args.get("experiment"))
    if problem:
        raise bad_request("experiment", problem)
    # The counts are read as the last fold left them (the JSON says when: ``counted_up_to``); the
    # worker folds every 5 minutes, and no report request takes the write lock to fold.
    return _export("experiments", args)


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
        campaigns = campaign_results(session, period, livemode)
        payout_rows = payout_lines(session, period, livemode)
        gaps = missing(session, period, livemode)
        experiment_list = experiment_results(session, settings, now, livemode)
    return _render(
        data,
        "reports/dashboard.html",
        caller=caller,
        charts=revenue_charts(report.rows),
        campaigns=[
            {
                "campaign": c.campaign,
                "currency": c.currency.upper(),
                "donations": c.donations,
                "subscriptions": c.subscriptions,
                "total": money.format_major(c.total, c.currency),
                "average": money.format_major(row[8], c.currency),
                "recurring_share": f"{row[6]:.0%}",
            }
            for c, row in ((c, c.row()) for c in campaigns)
        ],
        totals=report.totals,
        counts=counts,
        period=period,
        links=_download_links(period, today.year),
        forms=_report_forms(),
        kinds=KINDS,
        currencies=[t.currency for t in report.totals],
        timezone=tz.key,
        livemode={True: "live", False: "test", None: "all"}[livemode],
        mode_source=_mode_source(settings),
        payouts=list(reversed(payout_rows))[:PAGE_PAYOUTS],
        payout_count=len(payout_rows),
        missing=gaps,
        money=money.display,
        experiments=experiment_sections(experiment_list),
        experiments_counted=counted_text(experiment_list),
        trust_rule=stats.TRUST.reasons(),
        interim_p_best=f"{stats.TRUST.interim_p_best:.2f}",
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


@dataclass(frozen=True)
class PageReport:
    """A report the page offers: its route, its title, its groupings (the first is the default),
    and whether it can be filtered by kind."""

    endpoint: str
    title: str
    groups: tuple[str, ...] = ()
    by_kind: bool = True


# Every report on the page, in order: each gets download links for the last 12 months and a form
# for any period, currency and kind, so a report added here is offered (and browser-tested) whole.
# Payouts have no kind: a payout pays out donations and subscriptions together.
PAGE_REPORTS = (
    PageReport("reports.revenue", "Revenue", GROUPS),
    PageReport("reports.subscriptions", "Subscriptions", TIME_GROUPS),
    PageReport("reports.payments", "Payments"),
    PageReport("reports.donors", "Donors"),
    PageReport("reports.campaigns", "Campaign results"),
    PageReport("reports.payouts", "Payouts", by_kind=False),
)
FORMATS = ("csv", "xlsx", "json")


def _download_links(period: Period, year: int) -> list[dict[str, Any]]:
    """Links for the last 12 months: each report, in each of its groupings, in every format; then
    donors by calendar year (tax receipts)."""
    s, e = period.start.isoformat(), period.end.isoformat()
    out = []
    for report in PAGE_REPORTS:
        for group in report.groups or (None,):
            params: dict[str, Any] = {"start": s, "end": e} | ({"group_by": group} if group else {})
            out.append(
                {
                    "title": f"{report.title} by {group}" if group else report.title,
                    "links": [(f, url_for(report.endpoint, format=f, **params)) for f in FORMATS],
                }
            )
    for y in (year, year - 1):
        out.append(
            {
                "title": f"Donors {y}",
                "links": [(f, url_for("reports.donors", format=f, year=y)) for f in FORMATS],
            }
        )
    return out


def _report_forms() -> list[dict[str, Any]]:
    return [
        {
            "title": r.title,
            "action": url_for(r.endpoint),
            "groups": r.groups,
            "by_kind": r.by_kind,
            "name": r.endpoint.split(".")[-1],
        }
        for r in PAGE_REPORTS
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
