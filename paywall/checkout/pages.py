"""Reader pages: /donate, /subscribe and /thanks (the widget: paywall/widget/; /account: paywall/account/).

Who the reader is comes from a signed token (an access token from the site, or a personal link
from the mailer), never from a bare id in a URL.

CSRF: these pages set no cookies at all, so there is no ambient authority to ride on. Each form
carries a *form token*: signed by us, valid two hours, bound to the reader it was rendered for and
to a random nonce. A POST without a valid form token is refused; a forged cross-site POST cannot
name a reader, and the nonce makes a double click reuse one Checkout Session (idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request
from flask_smorest import Api
from marshmallow import ValidationError

from paywall import clock, forms, money, signing
from paywall.checkout import limits, sessions, thanks
from paywall.checkout.appeals import READER_PURPOSES, offered_amounts, page_attribution, posted_attribution
from paywall.checkout.plans import Plan, offered_plans
from paywall.checkout.settings import (
    INTERVALS,
    checkout_settings,
    donation_settings,
    ratelimit_settings,
)
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError
from paywall.experiments import attribution
from paywall.experiments.attribution import Attribution
from paywall.schemas import validate_identifier
from paywall.signin.returns import safe_return_url

bp = Blueprint("reader_pages", __name__, template_folder="templates")

FORM_PURPOSE = "checkout-form"
INTERVAL_LABELS = {"once": "Once", "month": "Monthly", "year": "Yearly"}
PLAN_INTERVALS = {"month": "per month", "year": "per year"}


def reader_from_token(settings: Settings, token: str | None) -> str | None:
    """The reader id a site or mail token names; None when absent or not valid."""
    if not token:
        return None
    try:
        claims = signing.verify(settings, token, purpose=READER_PURPOSES)
    except signing.InvalidToken:
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str):
        return None
    try:
        validate_identifier(sub)
    except ValidationError:
        return None
    return sub


def make_form_token(settings: Settings, form: str, reader: str | None) -> str:
    """A form token for a reader page (paywall/forms.py)."""
    return forms.make_form_token(settings, form, reader, purpose=FORM_PURPOSE)


def read_form_token(settings: Settings, form: str) -> forms.FormClaims | None:
    """The reader and nonce of the posted reader-page form token, or None."""
    return forms.read_form_token(settings, form, purpose=FORM_PURPOSE)


def form_reader(form: str) -> Any:
    """For the rate limiter: the reader of the posted ``form`` token (None for guests)."""

    def reader() -> str | None:
        claims = read_form_token(current_settings(), form)
        return claims.reader if claims else None

    return reader


def _message(status: int, title: str, text: str) -> tuple[str, int]:
    site_url = checkout_settings(current_settings()).site_url
    return render_template("checkout/message.html", title=title, text=text, site_url=site_url), status


def _stripe_failure(exc: ApiError) -> tuple[str, int]:
    if exc.status == 503:
        return _message(503, "Payments are not available", "Payments are not set up yet. Please try later.")
    if exc.status == 502:
        return _message(
            502,
            "Payments are unavailable",
            "We could not reach our payment provider. Nothing was charged; please try again in a minute.",
        )
    raise exc


def _return_to(settings: Settings, values: Any) -> str | None:
    """The article to come back to after paying (``return_to``); dropped unless on an allowed origin."""
    value = values.get("return_to")
    return safe_return_url(settings, value) if isinstance(value, str) else None


# ----- /donate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    amount: int
    label: str


def _amount_label(amount: int, currency: str) -> str:
    return money.display(amount, currency)


def _donate_context(
    settings: Settings,
    reader: str | None,
    *,
    currency: str,
    interval: str,
    amount: int | None,
    other: str = "",
    errors: dict[str, str] | None = None,
    campaign: str | None = None,
    token: str | None = None,
    return_to: str | None = None,
    found: Attribution | None = None,
) -> dict[str, Any]:
    donations = donation_settings(settings)
    bounds = donations.bounds(currency)
    amounts, preselect = offered_amounts(settings, currency, attribution.variant_of(settings, found))
    presets = [Preset(p, _amount_label(p, currency)) for p in amounts]
    if amount is None and not other:
        amount = preselect
    ask = attribution.carried_ask(settings, found, clock.now()) if found is not None else None
    currency_links = [
        (
            code.upper(),
            "?"
            + urlencode(
                {
                    k: v
                    for k, v in {"token": token, "currency": code, "return_to": return_to, "ask": ask}.items()
                    if v
                }
            ),
        )
        for code in donations.currencies
    ]
    return {
        "reader": reader,
        "form_token": make_form_token(settings, "donate", reader),
        "currency": currency,
        "currency_links": currency_links if len(donations.currencies) > 1 else [],
        "presets": presets,
        "selected": amount,
        "other": other,
        "interval": interval,
        "intervals": [(i, INTERVAL_LABELS[i]) for i in INTERVALS],
        "min_label": _amount_label(bounds.min, currency),
        "max_label": _amount_label(bounds.max, currency),
        "step": str(Decimal(1).scaleb(-money.exponent(currency))),
        "errors": errors or {},
        "campaign": campaign or "",
        "return_to": return_to or "",
        "ask": ask or "",
        "site_url": checkout_settings(settings).site_url,
    }


def _pick(value: str | None, allowed: list[str] | tuple[str, ...], default: str) -> str:
    value = (value or "").lower()
    return value if value in allowed else default


def link_campaign(settings: Settings, token: str | None) -> str | None:
    """The campaign a mailer link was sent for (its ``cmp`` claim), so the gift is attributed to it."""
    if not token:
        return None
    try:
        claims = signing.verify(settings, token, purpose=READER_PURPOSES)
    except signing.InvalidToken:
        return None
    value = claims.get("cmp")
    return value if isinstance(value, str) else None


def _campaign(value: str | None) -> str | None:
    if value and len(value) <= 100 and all(c.isalnum() or c in "._:-" for c in value):
        return value
    return None


@bp.get("/donate")
def donate_page() -> Any:
    """The donation form: preset amounts, another amount, once/monthly/yearly."""
    settings = current_settings()
    donations = donation_settings(settings)
    token = request.args.get("token")
    # An expired token still lets the reader give, as a guest: a gift is never refused for that.
    reader = reader_from_token(settings, token)
    currency = _pick(request.args.get("currency"), donations.currencies, donations.default_currency)
    interval = _pick(request.args.get("interval"), INTERVALS, donations.default_interval)
    context = _donate_context(
        settings,
        reader,
        currency=currency,
        interval=interval,
        amount=None,
        campaign=_campaign(request.args.get("campaign") or link_campaign(settings, token)),
        token=token if reader else None,
        return_to=_return_to(settings, request.args),
        found=page_attribution(settings, request.args, token),
    )
    return render_template("checkout/donate.html", **context)


# Longer than any amount a donation limit allows, and far below int()'s 4,300-digit limit.
AMOUNT_MAX_CHARS = 20


def parse_major(text: str, currency: str) -> int | None:
    """A typed amount in major units ("12.50") as minor units; None when it is not a plain amount."""
    cleaned = text.strip().replace(",", ".").replace(" ", "")
    if len(cleaned) > AMOUNT_MAX_CHARS:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    # "1e999999999" is a finite Decimal whose minor units would overflow the context (a 500).
    if not value.is_finite() or value <= 0 or value.adjusted() >= AMOUNT_MAX_CHARS:
        return None
    minor = value.scaleb(money.exponent(currency))
    if minor != minor.to_integral_value():
        return None
    return int(minor)


def _chosen_amount(currency: str, other: str) -> tuple[int | None, str | None]:
    """The posted amount in minor units, or the message saying what is wrong with it."""
    if other:
        # A typed amount is the most explicit choice: it wins over the preselected preset.
        amount = parse_major(other, currency)
        return (amount, None) if amount is not None else (None, "Enter an amount such as 12 or 12.50.")
    choice = request.form.get("amount", "")
    if choice.isascii() and choice.isdigit() and len(choice) <= AMOUNT_MAX_CHARS:
        # isdigit() alone takes "²" (which int() refuses) and 4,301 digits (which int() refuses too).
        return int(choice), None
    return None, "Choose an amount."


@bp.post("/donate")
def donate_submit() -> Any:
    """Create the donation's Checkout Session and send the reader there (303)."""
    settings = current_settings()
    donations = donation_settings(settings)
    form = read_form_token(settings, "donate")
    if form is None:
        return _message(
            400, "Please try again", "This form has expired. Please go back, reload the page and try again."
        )
    currency = _pick(request.form.get("currency"), donations.currencies, donations.default_currency)
    interval = _pick(request.form.get("interval"), INTERVALS, donations.default_interval)
    campaign = _campaign(request.form.get("campaign"))
    return_to = _return_to(settings, request.form)
    found = posted_attribution(settings, form.reader)
    other = request.form.get("other_amount", "").strip()
    amount, problem = _chosen_amount(currency, other)
    errors: dict[str, str] = {"amount": problem} if problem else {}
    params: dict[str, Any] | None = None
    if amount is not None:
        with current_db().transaction(readonly=True) as session:
            buyer = sessions.find_buyer(session, settings, form.reader, None)
        try:
            params = sessions.donation_params(
                settings,
                buyer,
                amount=amount,
                currency=currency,
                interval=interval,
                campaign=campaign,
                return_to=return_to,
                appeal=found.metadata() if found is not None else None,
            )
        except ApiError as exc:
            if exc.status != 422:
                raise
            errors.update({field: msgs[0] for field, msgs in exc.errors.items()})
    if errors or params is None:
        context = _donate_context(
            settings,
            form.reader,
            currency=currency,
            interval=interval,
            amount=None if other else amount,
            other=other,
            errors=errors,
            campaign=campaign,
            return_to=return_to,
            found=found,
        )
        return render_template("checkout/donate.html", **context), 422
    key = sessions.idempotency_key("donation", params, form.nonce)
    try:
        created = sessions.create_checkout_session(settings, params, key=key)
    except ApiError as exc:
        return _stripe_failure(exc)
    return redirect(created.url, code=303)


# ----- /subscribe --------------------------------------------------------------------------------


def _plan_view(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "label": plan.label,
        "description": plan.description,
        "price": f"{money.display(plan.amount, plan.currency)} {PLAN_INTERVALS[plan.interval]}",
    }


@bp.get("/subscribe")
def subscribe_page() -> Any:
    """The plans, each with a button that starts Checkout; ``?plan=`` shows just that one.

    A valid site token buys as its reader; without one (or with an anonymous or expired one) the
    reader buys as a guest and Checkout asks for the email."""
    settings = current_settings()
    token = request.args.get("token")
    reader = reader_from_token(settings, token)
    plans = offered_plans(settings)
    wanted = request.args.get("plan")
    if wanted:
        if wanted not in plans:
            return _message(404, "No such plan", "That plan is not offered. See all plans on /subscribe.")
        shown = [plans[wanted]]
    else:
        shown = list(plans.values())
    found = page_attribution(settings, request.args, token)
    return render_template(
        "checkout/subscribe.html",
        plans=[_plan_view(p) for p in shown],
        reader=reader,
        form_token=make_form_token(settings, "subscribe", reader),
        campaign=_campaign(request.args.get("campaign") or link_campaign(settings, token)) or "",
        return_to=_return_to(settings, request.args) or "",
        ask=attribution.carried_ask(settings, found, clock.now()) if found is not None else "",
        site_url=checkout_settings(settings).site_url,
    )


@bp.post("/subscribe")
def subscribe_submit() -> Any:
    """Create the plan's Checkout Session for the reader of the form token (or a guest) and redirect (303)."""
    settings = current_settings()
    form = read_form_token(settings, "subscribe")
    if form is None:
        return _message(
            400,
            "Please try again",
            "This form has expired. Please go back to the article and press Subscribe again.",
        )
    plan = offered_plans(settings).get(request.form.get("plan", ""))
    if plan is None:
        return _message(404, "No such plan", "That plan is not offered.")
    with current_db().transaction(readonly=True) as session:
        buyer = sessions.find_buyer(session, settings, form.reader, None)
    found = posted_attribution(settings, form.reader)
    try:
        params = sessions.subscription_params(
            settings,
            plan,
            buyer,
            campaign=_campaign(request.form.get("campaign")),
            return_to=_return_to(settings, request.form),
            appeal=found.metadata() if found is not None else None,
        )
        key = sessions.idempotency_key("subscription", params, form.nonce)
        created = sessions.create_checkout_session(settings, params, key=key)
    except ApiError as exc:
        return _stripe_failure(exc)
    return redirect(created.url, code=303)


# ----- /thanks -----------------------------------------------------------------------------------


@bp.get("/thanks")
def thanks_page() -> Any:
    """After Checkout (``?session_id=``): record the payment, sign the payer in on this device once
    and send them back to ``return_to``; after the portal (no session id): a plain thank-you."""
    settings = current_settings()
    session_id = request.args.get("session_id")
    site_url = checkout_settings(settings).site_url
    if session_id is None:
        return render_template(
            "checkout/thanks.html",
            donation=request.args.get("kind") == "donation",
            from_portal=request.args.get("from") == "portal",
            site_url=site_url,
        )
    return_to = _return_to(settings, request.args)
    try:
        done = thanks.complete(current_db(), settings, session_id, now=clock.now())
    except thanks.ThanksRefused as exc:
        return _private(_message(exc.status, exc.title, exc.text))
    except ApiError as exc:
        if exc.status != 502:
            return _private(_stripe_failure(exc))
        # Unlike before Checkout, the reader has paid: "nothing was charged" would be wrong here.
        text = (
            "Your payment went through, but we could not confirm it with our payment provider just "
            "now. Please reload this page in a minute."
        )
        return _private(_message(502, "Thank you", text))
    back = return_to or site_url
    if done.token is not None:
        target = thanks.destination(settings, done.token, return_to)
        if target is not None:
            return _private(redirect(target, code=303))
        back = thanks.with_signin_fragment(site_url, done.token) if site_url else ""
    page = render_template(
        "checkout/thanks.html",
        donation=done.kind == "donation",
        from_portal=False,
        signin=done.signin,
        site_url=back,
    )
    return _private(page)


def _private(answer: Any) -> Response:
    """/thanks answers carry one-time tokens or name a payment: never cached, never a Referer."""
    resp = current_app.make_response(answer)
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def init_app(app: Flask, api: Api) -> None:
    """Register the pages, with their rate limits."""
    app.register_blueprint(bp)
    conf = ratelimit_settings(settings_of(app))
    # Each /thanks?session_id= reads from Stripe: bound what one address can make us ask for.
    limits.limit(app, "reader_pages.thanks_page", per_address=conf.widget_per_address)
    # Card testing: every route that creates a Stripe session is limited per address and per reader.
    for form in ("donate", "subscribe"):
        limits.limit(
            app,
            f"reader_pages.{form}_submit",
            per_address=conf.checkout_per_address,
            per_reader=conf.checkout_per_reader,
            reader_from=form_reader(form),
        )
