"""One-click unsubscribe (RFC 8058): POST unsubscribes, GET only shows a button, bad tokens get 4xx."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

from flask.testing import FlaskClient

from paywall import signing
from paywall.config import Settings
from paywall.db import Database
from paywall.mail.links import reader_link, unsubscribe_url
from paywall.models import Reader
from paywall.readers.service import find_reader
from tests.support.mail import add_reader


def path_and_token(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.path, parse_qs(parsed.query)["token"][0]


def unsubscribed_at(db: Database, external_id: str) -> dt.datetime | None:
    with db.transaction(readonly=True) as s:
        reader = find_reader(s, external_id)
        assert isinstance(reader, Reader)
        return reader.unsubscribed_at


def test_get_shows_a_button_and_changes_nothing(
    db: Database, settings: Settings, client: FlaskClient
) -> None:
    add_reader(db, "u1", email="ana.lopez@example.org")
    path, token = path_and_token(unsubscribe_url(settings, "u1", "keep-us-open"))
    for _ in range(3):  # a scanner following the link, more than once
        resp = client.get(path, query_string={"token": token})
        assert resp.status_code == 200
        assert resp.mimetype == "text/html"
        page = resp.get_data(as_text=True)
        assert '<form method="post"' in page and "<button" in page
        assert "a…@example.org" in page and "ana.lopez" not in page
        assert resp.headers["Cache-Control"] == "no-store"
    assert unsubscribed_at(db, "u1") is None


def test_one_click_post_is_idempotent_and_needs_no_login(
    db: Database, settings: Settings, client: FlaskClient
) -> None:
    add_reader(db, "u2")
    path, token = path_and_token(unsubscribe_url(settings, "u2", "keep-us-open"))
    # What a mail provider sends for RFC 8058: a form body, no cookies, no Authorization.
    first = client.post(
        f"{path}?token={token}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert first.status_code == 200 and "You are unsubscribed" in first.get_data(as_text=True)
    when = unsubscribed_at(db, "u2")
    assert when is not None
    again = client.post(f"{path}?token={token}")  # and with no body at all
    assert again.status_code == 200
    assert unsubscribed_at(db, "u2") == when
    # The page now says so, still without changing anything.
    assert "already unsubscribed" in client.get(f"{path}?token={token}").get_data(as_text=True)


def test_bad_tokens_get_a_clear_4xx_page(db: Database, settings: Settings, client: FlaskClient) -> None:
    add_reader(db, "u3")
    path, token = path_and_token(unsubscribe_url(settings, "u3"))
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}x.{sig}"
    expired, _ = signing.sign(settings, {"sub": "u3"}, purpose="unsubscribe", ttl=dt.timedelta(days=-2))
    _, other_purpose = path_and_token(reader_link(settings, "u3", "donate"))
    cases = [
        (tampered, 400, "not valid"),
        (expired, 410, "expired"),
        (other_purpose, 400, "not valid"),
        ("", 400, ""),
    ]
    for bad, status, words in cases:
        for method in (client.get, client.post):
            resp = method(path, query_string={"token": bad} if bad else None)
            assert resp.status_code == status, (bad, resp.status_code)
            assert resp.mimetype == "text/html"
            assert "This link does not work" in resp.get_data(as_text=True)
            assert words in resp.get_data(as_text=True)
    assert unsubscribed_at(db, "u3") is None


def test_unknown_reader_is_still_a_calm_200(settings: Settings, client: FlaskClient, db: Database) -> None:
    path, token = path_and_token(unsubscribe_url(settings, "nobody"))
    assert client.post(f"{path}?token={token}").status_code == 200
