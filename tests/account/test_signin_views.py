"""Signing in on /account with the mailed code (or link), and "Delete my account" confirmed by a code."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.mail.delivery import drain
from paywall.mail.smtp import SmtpTransport
from paywall.models import OutboxMessage, Payment, Reader
from paywall.signin.identity import normalise_email
from paywall.signin.sealing import unseal
from paywall.signin.service import MAIL_KINDS
from tests.account import test_views as base
from tests.account.test_views import add_reader, form_token, https_client, post
from tests.checkout.test_sessions import PUBLIC
from tests.support.mail import SmtpSink, body_text, smtp_env

stripe_api, account_settings, browser, signed_in = (
    base.stripe_api,
    base.account_settings,
    base.browser,
    base.signed_in,
)


def mailed_code(db: Database, settings: Settings, email: str, purpose: str = "signin") -> str:
    """The code in the newest queued mail to ``email`` for ``purpose`` (opened as the mailer opens it)."""
    kind, address = MAIL_KINDS[purpose], normalise_email(email)
    with db.transaction(readonly=True) as session:
        msg = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == kind, OutboxMessage.to_email == address)
            .order_by(OutboxMessage.id.desc())
        ).first()
        assert msg is not None, f"no {kind} mail to {email}"
        secret = unseal(settings, kind, address, msg.data["sealed"])
    assert secret is not None
    return str(secret["code"])


def ask_for_code(browser: FlaskClient, email: str) -> Any:
    ft = form_token(browser.get("/account").get_data(as_text=True))
    return post(browser, "/account/signin", {"form_token": ft, "email": email})


def enter_code(browser: FlaskClient, code_page: str, email: str, code: str) -> Any:
    return post(browser, "/account/code", {"form_token": form_token(code_page), "email": email, "code": code})


def test_signing_in_with_the_mailed_code(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    add_reader(db, "ana", verified="ana@example.org")
    asked = ask_for_code(browser, "Ana@Example.org ")
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "We sent a 6-digit code to <strong>Ana@Example.org</strong>" in html
    assert 'autocomplete="one-time-code"' in html and "Set-Cookie" not in asked.headers
    resp = enter_code(browser, html, "Ana@Example.org", mailed_code(db, account_settings, "Ana@Example.org"))
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    assert "Signed in as <strong>ana@example.org</strong>" in browser.get("/account").get_data(as_text=True)


def test_an_unknown_address_gets_the_same_page_and_a_new_reader_on_the_code(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    asked = ask_for_code(browser, "new@example.org")
    assert asked.status_code == 200 and "We sent a 6-digit code" in asked.get_data(as_text=True)
    enter_code(
        browser,
        asked.get_data(as_text=True),
        "new@example.org",
        mailed_code(db, account_settings, "new@example.org"),
    )
    with db.transaction(readonly=True) as session:
        reader = session.scalar(select(Reader).where(Reader.verified_email == "new@example.org"))
        assert reader is not None and reader.registered_at is not None


def test_a_wrong_code_is_refused_and_counted(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    page = ask_for_code(browser, "ana@example.org").get_data(as_text=True)
    right = mailed_code(db, account_settings, "ana@example.org")
    wrong = "000000" if right != "000000" else "111111"
    resp = enter_code(browser, page, "ana@example.org", wrong)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'aria-invalid="true"' in html and 'id="code-error"' in html
    assert "Set-Cookie" not in resp.headers
    for _ in range(4):
        enter_code(browser, page, "ana@example.org", wrong)
    # Five wrong tries lock the address: even the right code is refused until a new one is sent.
    locked = enter_code(browser, page, "ana@example.org", right)
    assert locked.status_code == 400 and "Signed in as" not in browser.get("/account").get_data(as_text=True)


def test_bad_input_is_a_form_error_not_a_500(browser: FlaskClient) -> None:
    ft = form_token(browser.get("/account").get_data(as_text=True))
    for email in ("", "not-an-address", "a@" + "b" * 400 + ".org"):
        resp = post(browser, "/account/signin", {"form_token": ft, "email": email})
        assert resp.status_code == 422 and 'id="email-error"' in resp.get_data(as_text=True)
    assert post(browser, "/account/signin", {"email": "ana@example.org"}).status_code == 400
    foreign = post(
        browser, "/account/signin", {"form_token": ft, "email": "a@example.org"}, "https://evil.example"
    )
    assert foreign.status_code == 403
    assert post(browser, "/account/code", {"email": "a@example.org", "code": "123456"}).status_code == 400


def test_codes_are_limited_per_address_mailed_to(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    app: Flask = create_app(make_settings(signin={"per_email": "2/minute"}), db=db)
    app.config["TESTING"] = True
    client = https_client(app)
    assert ask_for_code(client, "ana@example.org").status_code == 200
    assert ask_for_code(client, "ANA@example.org").status_code == 200
    assert ask_for_code(client, "ana@example.org").status_code == 429
    assert ask_for_code(client, "bob@example.org").status_code == 200


# ----- Delete my account -------------------------------------------------------------------------


def test_deleting_the_account_takes_the_mailed_code(
    browser: FlaskClient, signed_in: str, db: Database, account_settings: Settings
) -> None:
    with db.transaction() as session:
        ana = session.scalar(select(Reader).where(Reader.external_id == "ana"))
        assert ana is not None
        session.add(Payment(stripe_charge_id="ch_1", reader_id=ana.id, kind="donation", amount_minor=500,
                            currency="eur", paid_at=ana.created_at, email="ana@example.org"))  # fmt: skip
    asked = post(browser, "/account/delete", {"form_token": signed_in})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "We sent a 6-digit code to <strong>ana@example.org</strong>" in page
    code = mailed_code(db, account_settings, "ana@example.org", "delete")
    wrong = "000000" if code != "000000" else "111111"
    refused = post(browser, "/account/delete/confirm", {"form_token": form_token(page), "code": wrong})
    assert refused.status_code == 400 and 'id="code-error"' in refused.get_data(as_text=True)
    # The page's ordinary form token does not confirm a deletion.
    assert (
        post(browser, "/account/delete/confirm", {"form_token": signed_in, "code": code}).status_code == 400
    )
    done = post(browser, "/account/delete/confirm", {"form_token": form_token(page), "code": code})
    assert done.status_code == 200 and "Your account is deleted" in done.get_data(as_text=True)
    assert "paywall_account=;" in done.headers["Set-Cookie"]
    with db.transaction(readonly=True) as session:
        ana = session.scalar(select(Reader).where(Reader.external_id == "ana"))
        assert ana is not None and ana.erased_at is not None
        assert ana.email is None and ana.verified_email is None
        payment = session.scalar(select(Payment))
        assert (
            payment is not None and payment.email is None and payment.amount_minor == 500
        )  # kept, anonymised
    assert "Email me a code" in browser.get("/account").get_data(as_text=True)


def test_deleting_needs_a_verified_address(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    add_reader(db, "site-reader", verified=None)
    base.open_session(browser, base.reader_token(db, account_settings, "site-reader"))
    ft = form_token(browser.get("/account").get_data(as_text=True))
    resp = post(browser, "/account/delete", {"form_token": ft})
    assert resp.status_code == 409 and "Confirm your email address first" in resp.get_data(as_text=True)
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Reader).where(Reader.external_id == "site-reader"))
        assert row is not None and row.erased_at is None


# ----- through a real SMTP server: the code and the link as the reader receives them -------------


def _received(make_settings: Callable[..., Settings], db: Database, client: FlaskClient) -> tuple[str, str]:
    """Ask for a code on the page, send the queued mail through a real SMTP server: (the page, the mail)."""
    with SmtpSink() as sink:
        settings = make_settings(smtp_env(sink), mailer={"backoff_seconds": 0.0})
        asked = ask_for_code(client, "ana@example.org")
        assert asked.status_code == 200
        with SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0) as t:
            assert drain(db, settings, t) == {"sent": 1}
        (received,) = sink.received
    text = body_text(received.message)
    return asked.get_data(as_text=True), str(text)


def test_the_mail_as_received_signs_in_by_code_and_by_link(
    make_settings: Callable[..., Settings], db: Database, account_settings: Settings
) -> None:
    app: Flask = create_app(account_settings, db=db)
    app.config["TESTING"] = True
    by_code, by_link = https_client(app), https_client(app)

    page, text = _received(make_settings, db, by_code)
    code = re.search(r"code: (\d{6})", text)
    assert code is not None, text
    assert enter_code(by_code, page, "ana@example.org", code.group(1)).status_code == 303
    assert "Signed in as <strong>ana@example.org</strong>" in by_code.get("/account").get_data(as_text=True)

    # The link: our /signin page (one press, so a mail scanner burns nothing), then "Open your account"
    # (the press is the form POST /signin; its page's script only copies the token from the URL).
    _, text = _received(make_settings, db, by_link)
    link = re.search(
        r"https://paywall\.example\.org/signin[?#](?:token|paywall_signin)=([A-Za-z0-9_-]+)", text
    )
    assert link is not None, text
    pressed = by_link.post("/signin", data={"token": link.group(1)}, headers={"Origin": PUBLIC})
    done = pressed.get_data(as_text=True)
    assert pressed.status_code == 200 and 'action="/account/session"' in done
    token = re.search(r'name="reader_token" value="([^"]+)"', done)
    assert token is not None
    opened = by_link.post(
        "/account/session", data={"reader_token": token.group(1)}, headers={"Origin": PUBLIC}
    )
    assert opened.status_code == 303
    assert "Signed in as <strong>ana@example.org</strong>" in by_link.get("/account").get_data(as_text=True)
