"""HTTP for sign-in by email: the site's routes (/v1), the widget's (/support) and our own page.

- ``POST /v1/signin``, ``/v1/signin/exchange``, ``/v1/signout``: the site's backend (role site).
- ``POST /support/signin``, ``/support/signin/exchange``, ``/support/signout``: the widget, from a
  page on an allowed origin (paywall/browser.py: origin check and CORS).
- ``GET /signin#paywall_signin=TOKEN`` and ``POST /signin``: where a mailed link goes when there
  is no article to return to and no [signin] return_url. The token stays in the fragment (never in
  a server log); the page's script puts it into a form that is sent only when the reader presses
  the button (mail scanners open every link: a GET that used the token would burn it first). The
  page also takes the address and code, scripts or not. The POST signs in on our origin and offers
  the account page (a form POST of the reader token to /account/session).

Rate limits (paywall/checkout/limits.py): asking for a code per client address and per email
address; exchanging per client address (wrong codes are capped per address by the lockout). The
site's routes are not limited per client address (the site's server is one address for all its
readers, as for donations) and check the key *before* any limit, so a bad key costs nothing.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint as PageBlueprint
from flask import Flask, Response, render_template, request

from paywall import browser, clock
from paywall.api import Blueprint
from paywall.auth import authorize, require_role
from paywall.checkout import limits
from paywall.checkout.settings import checkout_settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError, bad_request
from paywall.signin import service
from paywall.signin.codes import email_hash
from paywall.signin.returns import safe_return_url
from paywall.signin.schemas import (
    EMAIL_MAX,
    TOKEN_MAX,
    ExchangeRequestSchema,
    SentSchema,
    SignedInSchema,
    SignedOutSchema,
    SigninRequestSchema,
    SignoutRequestSchema,
)
from paywall.signin.settings import signin_settings

blp = Blueprint("signin", __name__, url_prefix="/v1", description="Sign-in by email (the site's backend)")
browser_blp = Blueprint(
    "signin_browser",
    __name__,
    url_prefix="/support",
    description="Sign-in by email (the widget, in the browser)",
)
browser.install(browser_blp)
page_bp = PageBlueprint(
    "signin_page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/signin/static",
)

NO_STORE = {"Cache-Control": "private, no-store"}
REFUSED_DOC = "The code or token is wrong, used, expired or locked (`errors` names `code` or `token`)."
INCOMPLETE = "Open the link from the mail again, or ask for a new code on the article you were reading."


def _send(data: dict[str, Any]) -> Any:
    settings = current_settings()
    if data["return_url"] is not None and safe_return_url(settings, data["return_url"]) is None:
        # 400 as every route that takes a return URL answers it (contracts), not a 422.
        raise bad_request("return_url", "Not a page of this site: its origin is not allowed.", status=400)
    prepared = service.prepare_signin(settings, data["email"], now=clock.now(), return_url=data["return_url"])
    with current_db().transaction() as session:
        service.store_signin(session, prepared)
    return {"outcome": "sent"}, 202, NO_STORE


def _exchange(data: dict[str, Any]) -> service.SignedIn:
    """The exchange in one transaction that commits even when the code is refused: a wrong code
    must count against the address before the answer goes out, or the lockout never bites."""
    refused: ApiError | None = None
    with current_db().transaction() as session:
        try:
            return service.exchange(
                session,
                current_settings(),
                email=data["email"],
                code=data["code"],
                token=data["token"],
                anonymous_reader=data["anonymous_reader"],
                now=clock.now(),
            )
        except ApiError as exc:
            if exc.status != 400:
                raise
            refused = exc
    raise refused


def _signed_in_body(signed: service.SignedIn) -> Any:
    body = {
        "reader": signed.reader,
        "reader_token": signed.reader_token,
        "access_token": signed.access_token,
        "expires_at": clock.isoformat(signed.expires_at),
    }
    return body, 200, NO_STORE


def _sign_out(data: dict[str, Any]) -> Any:
    with current_db().transaction() as session:
        outcome = service.sign_out(
            session, current_settings(), data["reader_token"], everywhere=data["everywhere"]
        )
    return {"outcome": outcome}, 200, NO_STORE


# -- the site's backend ---------------------------------------------------------------------------


@blp.route("/signin", methods=["POST"])
@require_role("site")
@blp.arguments(SigninRequestSchema())
@blp.response(202, SentSchema)
def site_signin(data: dict[str, Any]) -> Any:
    """Mail a 6-digit code and a one-time link to `email`; always `202 {"outcome": "sent"}`."""
    return _send(data)


@blp.route("/signin/exchange", methods=["POST"])
@require_role("site")
@blp.arguments(ExchangeRequestSchema())
@blp.response(200, SignedInSchema)
@blp.alt_response(400, schema="Error", description=REFUSED_DOC)
def site_exchange(data: dict[str, Any]) -> Any:
    """Sign in with `email` + `code`, or `token` (mailed link, /thanks): the reader and their tokens."""
    return _signed_in_body(_exchange(data))


@blp.route("/signout", methods=["POST"])
@require_role("site")
@blp.arguments(SignoutRequestSchema())
@blp.response(200, SignedOutSchema)
def site_signout(data: dict[str, Any]) -> Any:
    """Sign out: forget the reader token; with `everywhere`, end every session of the reader."""
    return _sign_out(data)


# -- the widget -----------------------------------------------------------------------------------


@browser_blp.route("/signin", methods=["POST"])
@browser_blp.arguments(SigninRequestSchema())
@browser_blp.response(202, SentSchema)
def browser_signin(data: dict[str, Any]) -> Any:
    """As POST /v1/signin, from a page on an allowed origin."""
    return _send(data)


@browser_blp.route("/signin/exchange", methods=["POST"])
@browser_blp.arguments(ExchangeRequestSchema())
@browser_blp.response(200, SignedInSchema)
@browser_blp.alt_response(400, schema="Error", description=REFUSED_DOC)
def browser_exchange(data: dict[str, Any]) -> Any:
    """As POST /v1/signin/exchange, from a page on an allowed origin."""
    return _signed_in_body(_exchange(data))


@browser_blp.route("/signout", methods=["POST"])
@browser_blp.arguments(SignoutRequestSchema())
@browser_blp.response(200, SignedOutSchema)
def browser_signout(data: dict[str, Any]) -> Any:
    """As POST /v1/signout, from a page on an allowed origin."""
    return _sign_out(data)


# -- our own page ---------------------------------------------------------------------------------


def _page(template: str, status: int = 200, **context: Any) -> Response:
    site_url = checkout_settings(current_settings()).site_url
    resp = Response(render_template(template, site_url=site_url, **context), status=status)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@page_bp.get("/signin")
def signin_page() -> Response:
    """The mailed link's landing page (token in the fragment: signin.js puts it in a one-press
    form), and a form for the address and code, which works with scripts off too."""
    return _page("signin/confirm.html")


CODE = re.compile(r"^\d{6}$")


def _page_proof() -> dict[str, Any] | None:
    """The form's token, or email and code, in the shape of an exchange body; None if incomplete."""
    form = request.form
    token, email, code = form.get("token", ""), form.get("email", "").strip(), form.get("code", "").strip()
    proof: dict[str, Any] = {"email": None, "code": None, "token": None, "anonymous_reader": None}
    if token and len(token) <= TOKEN_MAX:
        return {**proof, "token": token}
    if email and len(email) <= EMAIL_MAX and "@" in email and CODE.match(code):
        return {**proof, "email": email, "code": code}
    return None


@page_bp.post("/signin")
def signin_confirm() -> Response:
    """Use the link's token, or the typed code: signed in on our origin, with the account page next."""
    settings = current_settings()
    origin = request.headers.get("Origin")
    if origin and origin != browser.own_origin(settings):
        # Someone else's page posting its own token here would sign this browser in as them.
        return _page("signin/message.html", 403, title="Sign-in refused", text=INCOMPLETE)
    proof = _page_proof()
    email = request.form.get("email", "").strip()[:EMAIL_MAX]
    if proof is None:
        error = "Type the address the mail went to and the 6 digits from it."
        return _page("signin/confirm.html", 400, error=error, email=email)
    try:
        signed = _exchange(proof)
    except ApiError as exc:
        if proof["token"]:
            return _page(
                "signin/message.html", 400, title="This link does not work any more", text=exc.detail
            )
        return _page("signin/confirm.html", 400, error=exc.detail, email=email)
    return _page("signin/done.html", reader_token=signed.reader_token)


# -- wiring ---------------------------------------------------------------------------------------


def _body_email() -> str | None:
    """The per-email limit's key: a hash of the normalised address in the body (never the address)."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{email_hash(email)[:32]}" if isinstance(email, str) and email.strip() else None


def _key_first(app: Flask, endpoint: str, role: str) -> None:
    """Check the API key before the rate limits: a request with a bad key is a 401 and costs nothing."""
    inner = app.view_functions[endpoint]

    @functools.wraps(inner)
    def view(*args: Any, **kwargs: Any) -> Any:
        authorize(role)
        return inner(*args, **kwargs)

    app.view_functions[endpoint] = view


def init_app(app: Flask, api: Any) -> None:
    """Register the routes and the page, with their rate limits."""
    api.register_blueprint(blp)
    api.register_blueprint(browser_blp)
    app.register_blueprint(page_bp)
    conf = signin_settings(settings_of(app))
    limits.limit(app, "signin.site_signin", per_reader=conf.per_email, reader_from=_body_email)
    _key_first(app, "signin.site_signin", "site")
    limits.limit(
        app,
        "signin_browser.browser_signin",
        per_address=conf.per_address,
        per_reader=conf.per_email,
        reader_from=_body_email,
    )
    limits.limit(app, "signin_browser.browser_exchange", per_address=conf.exchange_per_address)
    limits.limit(app, "signin_page.signin_confirm", per_address=conf.exchange_per_address)
