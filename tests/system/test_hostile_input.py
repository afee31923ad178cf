"""Hostile input: each odd value a client can send is a 4xx problem naming the field, never a 500,
on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from tests.checkout.test_sessions import PLANS
from tests.support.stripe_fake import FakeStripe

UNUSABLE_NUL = "Must not contain control characters."
UNUSABLE_SURROGATE = "Must be valid Unicode text (no unpaired surrogates)."


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def web(make_settings: Callable[..., Settings], db: Database, stripe_api: FakeStripe) -> FlaskClient:
    env = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_hostile", "PAYWALL_STRIPE_API_BASE": stripe_api.url}
    app = create_app(make_settings(env, plans=PLANS), db=db)
    app.config["TESTING"] = True
    return app.test_client()


def _donate(web: FlaskClient, **fields: str) -> Any:
    page = web.get("/donate").get_data(as_text=True)
    match = re.search(r'name="form_token" value="([^"]+)"', page)
    assert match
    data = {"form_token": match.group(1), "currency": "eur", "interval": "once", **fields}
    return web.post("/donate", data=data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "²"}, "Choose an amount."),  # str.isdigit() says yes, int() says no
        ({"amount": "9" * 4301}, "Choose an amount."),  # past int()'s 4,300-digit limit
        ({"other_amount": "1e999999999"}, "Enter an amount such as 12 or 12.50."),
        ({"other_amount": "9" * 4301}, "Enter an amount such as 12 or 12.50."),
    ],
    ids=["superscript-two", "4301-digits", "huge-exponent", "4301-digits-typed"],
)
def test_donate_form_odd_amounts_are_422_naming_the_amount(
    web: FlaskClient, stripe_api: FakeStripe, fields: dict[str, str], message: str
) -> None:
    resp = _donate(web, **fields)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert f'<p class="error" id="amount-error">{message}</p>' in html
    assert stripe_api.posts("/v1/checkout/sessions") == []


@pytest.mark.parametrize(
    "path", ["/v1/checkout/donation", "/v1/readers/r1", "/v1/access", "/v1/comps/r1", "/webhooks/stripe"]
)
def test_deeply_nested_json_body_is_400_naming_the_body(
    web: FlaskClient, admin_key: dict[str, str], path: str
) -> None:
    method = web.put if path.startswith(("/v1/readers", "/v1/comps")) else web.post
    body = "[" * 100_000 + "]" * 100_000
    resp = method(path, data=body, content_type="application/json", headers=admin_key)
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"] == {"body": ["Nested too deeply."]}


def test_json_number_of_4301_digits_is_400_naming_the_body(
    web: FlaskClient, admin_key: dict[str, str]
) -> None:
    body = '{"amount": ' + "9" * 4301 + ', "currency": "eur", "interval": "once"}'
    resp = web.post("/v1/checkout/donation", data=body, content_type="application/json", headers=admin_key)
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"body": ["A number has too many digits."]}
    # An overflowing float is a type error of its field.
    body = '{"amount": 1e999999999, "currency": "eur", "interval": "once"}'
    resp = web.post("/v1/checkout/donation", data=body, content_type="application/json", headers=admin_key)
    assert resp.status_code == 422
    assert list(resp.get_json()["errors"]) == ["amount"]


@pytest.mark.parametrize(("text", "message"), [("a\x00b", UNUSABLE_NUL), ("a\ud800b", UNUSABLE_SURROGATE)])
def test_nul_and_lone_surrogate_in_text_fields_are_422_naming_the_field(
    web: FlaskClient, admin_key: dict[str, str], db: Database, text: str, message: str
) -> None:
    resp = web.put("/v1/readers/r1", json={"name": text}, headers=admin_key)
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["errors"] == {"name": [message]}
    resp = web.put("/v1/comps/r1", json={"until": "2999-01-01", "note": text}, headers=admin_key)
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"note": [message]}
    resp = web.post(
        "/v1/access", json={"reader": "r1", "article": "a1", "extra": {"k": text}}, headers=admin_key
    )
    assert resp.status_code == 422
    assert resp.get_json()["errors"]["extra.k"] == [message]
    assert web.get("/v1/readers/r1", headers=admin_key).status_code == 404  # nothing was stored


def test_nul_in_a_query_parameter_is_422_naming_it(web: FlaskClient, admin_key: dict[str, str]) -> None:
    resp = web.get("/v1/events?type=%00", headers=admin_key)
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"type": [UNUSABLE_NUL]}


@pytest.mark.parametrize(
    "until", ["9999-12-31", "9999-01-01", "9999-12-31T23:00:00-14:00", "9999-12-31T23:59Z"]
)
def test_comp_until_9999_12_31_is_422_naming_until(
    web: FlaskClient, admin_key: dict[str, str], until: str
) -> None:
    resp = web.put("/v1/comps/r1", json={"until": until}, headers=admin_key)
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"until": ["Must be 9998-12-31 or earlier."]}


def test_comp_until_the_last_day_allowed_works_end_to_end(
    web: FlaskClient, admin_key: dict[str, str], site_key: dict[str, str]
) -> None:
    resp = web.put("/v1/comps/r1", json={"until": "9998-12-31"}, headers=admin_key)
    assert resp.status_code in (200, 201), resp.get_json()
    assert resp.get_json()["until"].startswith("9999-01-01T00:00:00")
    assert web.get("/v1/readers/r1", headers=site_key).status_code == 200
    resp = web.post("/v1/access", json={"reader": "r1", "article": "a1"}, headers=site_key)
    assert resp.status_code == 200 and resp.get_json()["allowed"] is True
    assert web.post("/v1/access/token", json={"reader": "r1"}, headers=site_key).status_code == 200


def test_cli_comp_until_9999_12_31_is_a_usage_error(runner: CliRunner, db: Database) -> None:
    result = runner.invoke(main, ["comp", "grant", "vip", "--until", "9999-12-31"])
    assert result.exit_code == 2
    assert "Must be 9998-12-31 or earlier." in result.output
