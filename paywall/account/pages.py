"""The account blueprint and what its views share: refusals as pages, and who a POST acts for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Response, redirect, render_template
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from paywall.account import service
from paywall.account.web import cookie_token, origin_ok, read_form_token, set_session
from paywall.checkout.settings import checkout_settings
from paywall.config import Settings
from paywall.context import current_db, current_settings
from paywall.models import Reader
from paywall.signin.tokens import reader_from_token

bp = Blueprint("account", __name__, template_folder="templates")

# The signed-in page's forms share one form name; each token is bound to the reader.
ACCOUNT_FORM = "account"


class Refused(Exception):
    """A request this page will not act on; answered with a readable page, never a stack trace."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(title)
        self.status, self.title, self.text = status, title, text


def message(status: int, title: str, text: str) -> tuple[str, int]:
    """A short page saying what happened, with the way back to the account page."""
    site_url = checkout_settings(current_settings()).site_url
    return render_template("account/message.html", title=title, text=text, site_url=site_url), status


@bp.errorhandler(Refused)
def _refused(exc: Refused) -> tuple[str, int]:
    return message(exc.status, exc.title, exc.text)


def expired() -> Refused:
    return Refused(400, "Please try again", "This form has expired. Reload your account page and try again.")


def foreign() -> Refused:
    return Refused(403, "Not allowed", "This form was sent from another site, so nothing was done.")


def signed_out() -> Refused:
    return Refused(
        403,
        "You are signed out",
        "Your sign-in has ended (perhaps you signed out everywhere). Please sign in again.",
    )


def session_reader(session: Session, settings: Settings) -> Reader | None:
    """The reader of this browser's account session, if the session still holds."""
    reader_id = reader_from_token(session, settings, cookie_token())
    return service.live_reader(session, reader_id) if reader_id else None


@dataclass(frozen=True)
class Posted:
    settings: Settings
    reader: str


def posted(form: str = ACCOUNT_FORM) -> Posted:
    """The signed-in reader a POST acts for: our origin, a live session, the reader's own form token."""
    settings = current_settings()
    if not origin_ok(settings):
        raise foreign()
    submitted = read_form_token(settings, form)
    if submitted is None:
        raise expired()
    with current_db().transaction(readonly=True) as session:
        reader = session_reader(session, settings)
        if reader is None:
            raise signed_out()
        external_id = reader.external_id
    if submitted.reader != external_id:
        raise expired()  # rendered for someone else (another sign-in on this browser since)
    return Posted(settings, external_id)


def guest_posted(form: str) -> Settings:
    """The checks of a POST made before signing in: our origin and the form's token."""
    settings = current_settings()
    if not origin_ok(settings):
        raise foreign()
    if read_form_token(settings, form) is None:
        raise expired()
    return settings


def signed_in(settings: Settings, reader_token: str, expires: dt.datetime) -> BaseResponse:
    """303 to /account with the account session set."""
    resp = redirect("/account", code=303)
    set_session(resp, settings, reader_token, expires)
    return resp


def no_store(page: str, status: int = 200) -> Response:
    """A personal page: never cached by the browser or anything between."""
    resp = Response(page, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
