"""Signing in on the account page (email, then the mailed code) and deleting the account.

Both ask the sign-in service (paywall/signin/service.py) for a code mailed to the address; a wrong
code is counted before the page answers (the transaction commits, then the form says why). The
mail's link goes to the sign-in branch's /signin page (one press, so mail scanners burn nothing),
which hands the reader token to POST /account/session.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from marshmallow import ValidationError, validate

from paywall import clock
from paywall.account import service
from paywall.account.pages import (
    ACCOUNT_FORM,
    bp,
    guest_posted,
    message,
    no_store,
    posted,
    signed_in,
    signed_out,
)
from paywall.account.web import clear_session, cookie_reader_claim, make_form_token
from paywall.checkout import limits
from paywall.checkout.settings import checkout_settings
from paywall.config import Settings
from paywall.context import current_db, current_settings, settings_of
from paywall.errors import ApiError
from paywall.signin.codes import CodeRefused, email_hash
from paywall.signin.service import exchange, request_signin
from paywall.signin.settings import signin_settings

DELETE_FORM = "account-delete"
EMAIL_MAX = 320
_email = validate.Email(error="Enter your email address, such as name@example.org.")


def signin_form(
    settings: Settings, *, step: str = "email", email: str = "", errors: dict[str, str] | None = None
) -> str:
    """The sign-in page: the email step, or the code step for ``email``."""
    return render_template(
        "account/signin.html",
        step=step,
        email=email,
        errors=errors or {},
        form_token=make_form_token(settings, f"account-{step}", None),
        site_url=checkout_settings(settings).site_url,
    )


def _posted_email() -> str:
    return request.form.get("email", "").strip()[: EMAIL_MAX + 1]


@bp.post("/account/signin")
def signin_request() -> Any:
    """Mail a sign-in code (and link) to the address; the same page follows for known and unknown ones."""
    settings = guest_posted("account-email")
    email = _posted_email()
    try:
        if len(email) > EMAIL_MAX:
            raise ValidationError("This address is too long.")
        _email(email)
    except ValidationError as exc:
        errors = {"email": str(exc.messages[0])}
        return no_store(signin_form(settings, email=email, errors=errors), 422)
    with current_db().transaction() as session:
        # No return URL: the mail's link then opens our /signin page, which leads here.
        request_signin(session, settings, email, now=clock.now())
    return no_store(signin_form(settings, step="code", email=email))


@bp.post("/account/code")
def signin_code() -> Any:
    """The code from the mail signs this browser in (303 to /account), or the form says why not."""
    settings = guest_posted("account-code")
    email, code = _posted_email(), request.form.get("code", "").strip()[:20]
    refused: ApiError | None = None
    with current_db().transaction() as session:
        try:
            signed = exchange(session, settings, email=email, code=code, now=clock.now())
        except ApiError as exc:
            refused = exc  # the wrong try is committed with this transaction: it counts
    if refused is not None:
        text = next(iter(refused.errors.get("code", [])), refused.detail)
        return no_store(signin_form(settings, step="code", email=email, errors={"code": text}), 400)
    return signed_in(settings, signed.reader_token, signed.expires_at)


# ----- "Delete my account" -----------------------------------------------------------------------


def _delete_form(settings: Settings, reader: str, email: str, error: str = "") -> str:
    return render_template(
        "account/delete.html",
        email=email,
        error=error,
        form_token=make_form_token(settings, DELETE_FORM, reader),
        account_form_token=make_form_token(settings, ACCOUNT_FORM, reader),
        site_url=checkout_settings(settings).site_url,
    )


@bp.post("/account/delete")
def delete_request() -> Any:
    """Mail a code to the reader's verified address; the next page asks for it."""
    who = posted()
    with current_db().transaction() as session:
        reader = service.live_reader(session, who.reader)
        if reader is None:
            raise signed_out()
        email = reader.verified_email
        if email is None:
            return message(
                409,
                "Confirm your email address first",
                "We confirm a deletion with a code mailed to you, and we have no confirmed address for you. "
                "Sign out, then sign in on this page with your email address.",
            )
        request_signin(session, who.settings, email, now=clock.now(), purpose="delete")
    return no_store(_delete_form(who.settings, who.reader, email))


@bp.post("/account/delete/confirm")
def delete_confirm() -> Any:
    """The mailed code confirms: the reader's personal data is erased and this browser signed out."""
    who = posted(DELETE_FORM)
    code = request.form.get("code", "").strip()[:20]
    error, email = "", ""
    with current_db().transaction() as session:
        reader = service.live_reader(session, who.reader)
        if reader is None:
            raise signed_out()
        email = reader.verified_email or ""
        try:
            service.confirm_deletion(session, who.settings, reader, code, clock.now())
        except CodeRefused as exc:
            error = exc.message  # committed: the wrong try counts toward the lockout
    if error:
        return no_store(_delete_form(who.settings, who.reader, email, error), 400)
    page, status = message(
        200, "Your account is deleted", "We erased your personal data. Thank you for having been with us."
    )
    resp = no_store(page, status)
    clear_session(resp, who.settings)
    return resp


# ----- limits ------------------------------------------------------------------------------------


def _email_bucket() -> str | None:
    # Per address mailed to, hashed: a flood of codes to one person is refused whoever sends it.
    email = _posted_email()
    return "email:" + email_hash(email) if email else None


def limit(app: Flask) -> None:
    """Mailing codes and trying them are limited as the sign-in API is ([signin] per_* keys)."""
    conf = signin_settings(settings_of(app))
    limits.limit(
        app,
        "account.signin_request",
        per_address=conf.per_address,
        per_reader=conf.per_email,
        reader_from=_email_bucket,
    )
    limits.limit(app, "account.signin_code", per_address=conf.exchange_per_address)
    limits.limit(
        app,
        "account.delete_request",
        per_address=conf.per_address,
        per_reader=conf.per_email,
        reader_from=lambda: cookie_reader_claim(current_settings()),
    )
    limits.limit(app, "account.delete_confirm", per_address=conf.exchange_per_address)
