"""/account: the reader's own page on our origin, and the billing portal behind it.

Signed in by an account session (paywall/account/web.py): from the widget's "Your account"
button (``POST /account/session`` with the reader token) or by email and code on the page itself
(paywall/account/signin_views.py). Every POST is checked for its origin and its form token first.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask, Response, redirect, render_template, request
from flask_smorest import Api

from paywall import clock, signing
from paywall.account import display, service, signin_views
from paywall.account.pages import (
    ACCOUNT_FORM,
    Refused,
    bp,
    foreign,
    message,
    no_store,
    posted,
    session_reader,
    signed_in,
    signed_out,
)
from paywall.account.web import clear_session, cookie_reader_claim, cookie_token, make_form_token, origin_ok
from paywall.checkout import limits, sessions
from paywall.checkout.plans import load_plans
from paywall.checkout.settings import checkout_settings, ratelimit_settings
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError
from paywall.mail.settings import mailer_settings
from paywall.signin.service import sign_out
from paywall.signin.tokens import PURPOSE as READER_TOKEN
from paywall.signin.tokens import reader_from_token

NOTICES = {
    "appeals-on": "You will get our occasional appeals by email.",
    "appeals-off": "You will get no more appeals by email. Receipts and payment notices still come.",
}


@bp.get("/account")
def account_page() -> Any:
    """The reader's account when signed in; else the sign-in form (email, then a mailed code)."""
    settings = current_settings()
    with current_db().transaction(readonly=True) as session:
        reader = session_reader(session, settings)
        view = service.overview(session, settings, reader) if reader is not None else None
    if view is None:
        return no_store(signin_views.signin_form(settings))
    comp = view.supporter.get("comp")
    return no_store(
        render_template(
            "account/page.html",
            view=view,
            subscriptions=display.subscription_lines(view.supporter, plan_labels(settings)),
            donations=display.donation_lines(view.supporter),
            comp_until=display.day(comp["until"]) if comp else "",
            form_token=make_form_token(settings, ACCOUNT_FORM, view.reader),
            notice=NOTICES.get(request.args.get("done", "")),
            site_url=checkout_settings(settings).site_url,
        )
    )


def plan_labels(settings: Settings) -> dict[str, str]:
    """Each configured plan's label ("Monthly"), for subscriptions the rows name by plan."""
    # [plans] was checked when the app started, so this cannot raise a ConfigError.
    return {name: plan.label for name, plan in load_plans(settings).items()}


@bp.post("/account/session")
def open_session() -> Any:
    """From the widget's "Your account" button: the reader token becomes this browser's account session."""
    settings = current_settings()
    if not origin_ok(settings, from_site=True):
        raise foreign()
    token = request.form.get("reader_token", "")
    with current_db().transaction(readonly=True) as session:
        reader = reader_from_token(session, settings, token) if token else None
    if reader is None:
        raise Refused(
            403, "Please sign in again", "Your sign-in on the site has ended. Sign in with your email here."
        )
    expires = dt.datetime.fromtimestamp(signing.verify(settings, token, purpose=READER_TOKEN)["exp"], dt.UTC)
    return signed_in(settings, token, expires)


@bp.post("/account/portal")
def portal() -> Any:
    """ "Manage billing": a Stripe customer-portal session for the signed-in reader (303)."""
    who = posted()
    with current_db().transaction(readonly=True) as session:
        buyer = sessions.find_buyer(session, who.settings, who.reader, None)
    if buyer.stripe_customer_id is None:
        return message(
            404,
            "Nothing to manage yet",
            "We have no subscription or donation on record for you. If you just paid, try again in a minute.",
        )
    try:
        url = sessions.create_portal_session(
            who.settings, buyer.stripe_customer_id, return_url=portal_return_url(who.settings)
        )
    except ApiError as exc:
        if exc.status == 503:
            return message(503, "Billing is not available", "Payments are not set up yet. Please try later.")
        if exc.status == 502:
            return message(
                502, "Billing is unavailable", "We could not reach our payment provider. Please try again."
            )
        raise
    return redirect(url, code=303)


def portal_return_url(settings: Settings) -> str:
    """Back from the portal: [checkout] portal_return_url when set, else this account page."""
    configured = checkout_settings(settings).portal_return_url
    return configured or settings.server.public_url.rstrip("/") + "/account"


@bp.get("/portal")
def portal_moved() -> Any:
    """Old links (mails, pages with an access token): the portal now opens from the account page only."""
    return message(
        200,
        "Manage your support on your account page",
        "Billing now opens only after you sign in: sign in on your account page with your email "
        "address, then choose Manage billing.",
    )


@bp.post("/account/appeals")
def appeals() -> Any:
    """Appeal mail on or off (``appeals`` = ``on`` / ``off``), in the fields the unsubscribe link uses."""
    who = posted()
    wanted = request.form.get("appeals")
    if wanted not in ("on", "off"):
        return message(422, "Please choose", "Choose whether you want appeals by email (appeals: on or off).")
    with current_db().transaction() as session:
        reader = service.live_reader(session, who.reader)
        if reader is None:
            raise signed_out()
        service.set_appeal_mail(session, reader, wanted == "on", clock.now())
    return redirect(f"/account?done=appeals-{wanted}", code=303)


@bp.get("/account/receipts/<charge>")
def receipt(charge: str) -> Any:
    """One donation's receipt, for the signed-in reader only."""
    settings = current_settings()
    with current_db().transaction(readonly=True) as session:
        reader = session_reader(session, settings)
        if reader is None:
            return redirect("/account", code=303)
        payment = service.donation(session, reader, charge[:255])
        if payment is None:
            return message(404, "No such donation", "We found no donation of yours with this receipt number.")
        body = {
            "charge": payment.stripe_charge_id,
            "amount": display.amount(payment.amount_minor, payment.currency),
            "refunded": display.amount(payment.refunded_minor, payment.currency)
            if payment.refunded_minor
            else "",
            "date": display.day(payment.paid_at),
            "recurring": payment.recurring,
            "email": reader.verified_email or reader.email or payment.email,
        }
    page = render_template(
        "account/receipt.html",
        receipt=body,
        organisation=mailer_settings(settings).organisation,
        site_url=checkout_settings(settings).site_url,
    )
    return no_store(page)


@bp.post("/account/data")
def download_data() -> Any:
    """ "Download my data": a JSON attachment of everything held about the signed-in reader."""
    who = posted()
    now = clock.now()
    with current_db().transaction(readonly=True) as session:
        reader = service.live_reader(session, who.reader)
        if reader is None:
            raise signed_out()
        data = service.export_data(session, who.settings, reader, now)
    resp = Response(json.dumps(data, indent=2, ensure_ascii=False) + "\n", mimetype="application/json")
    resp.headers["Content-Disposition"] = f'attachment; filename="my-data-{now:%Y-%m-%d}.json"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.post("/account/signout")
def account_sign_out() -> Any:
    """Sign out on this browser; with ``everywhere=1`` end every session of the reader as well."""
    who = posted()
    if request.form.get("everywhere") == "1":
        with current_db().transaction() as session:
            # The sign-in service's own "everywhere": the session version every reader token carries.
            sign_out(session, who.settings, cookie_token() or "", everywhere=True)
    resp = redirect("/account", code=303)
    clear_session(resp, who.settings)
    return resp


def init_app(app: Flask, api: Api) -> None:
    """Register the account pages (signin_views' routes are on the same blueprint) and their limits."""
    app.register_blueprint(bp)
    conf = ratelimit_settings(settings_of(app))
    # The portal creates a Stripe session: limited like Checkout (card testing, API cost).
    limits.limit(
        app,
        "account.portal",
        per_address=conf.checkout_per_address,
        per_reader=conf.checkout_per_reader,
        reader_from=lambda: cookie_reader_claim(current_settings()),
    )
    signin_views.limit(app)
