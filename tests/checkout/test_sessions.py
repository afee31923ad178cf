"""The checkout API: the exact parameters sent to Stripe (a local server stands in for its API),
idempotency keys, the reuse of customers, validation, and Stripe failures as 502/503 problems."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from paywall import clock
from paywall.app import create_app
from paywall.checkout import sessions
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Reader, StripeCustomer
from tests.support.stripe_fake import FakeStripe, stripe_error_body

PLANS = {
    "monthly": {
        "price": "price_monthly123",
        "label": "Monthly",
        "interval": "month",
        "amount": 500,
        "currency": "eur",
        "description": "",
    },
    "yearly": {
        "price": "price_yearly456",
        "label": "Yearly",
        "interval": "year",
        "amount": 5000,
        "currency": "eur",
        "description": "Two months free.",
    },
}
PUBLIC = "https://paywall.example.org"


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def checkout_env(stripe_api: FakeStripe) -> dict[str, str]:
    return {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_checkout", "PAYWALL_STRIPE_API_BASE": stripe_api.url}


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings], db: Database, checkout_env: dict[str, str]
) -> Callable[..., FlaskClient]:
    def make(env: dict[str, str] | None = None, **overrides: Any) -> FlaskClient:
        overrides.setdefault("plans", PLANS)
        settings = make_settings({**checkout_env, **(env or {})}, **overrides)
        app = create_app(settings, db=db)
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def api(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def add_customer(
    db: Database,
    reader: str,
    customer: str,
    *,
    livemode: bool = False,
    deleted: bool = False,
    created: int = 1,
) -> None:
    with db.transaction() as session:
        row = session.query(Reader).filter_by(external_id=reader).one_or_none()
        if row is None:
            row = Reader(external_id=reader, email=f"{reader}@example.org")
            session.add(row)
            session.flush()
        session.add(
            StripeCustomer(
                stripe_customer_id=customer,
                reader_id=row.id,
                livemode=livemode,
                stripe_created=clock.from_timestamp(1_700_000_000 + created),
                deleted_at=clock.now() if deleted else None,
            )
        )


def test_plans_are_listed_for_the_site(
    api: FlaskClient, site_key: dict[str, str], finance_key: dict[str, str]
) -> None:
    resp = api.get("/v1/plans", headers=site_key)
    assert resp.status_code == 200
    assert resp.get_json()["plans"] == [
        {
            "name": "monthly",
            "label": "Monthly",
            "description": "",
            "price": "price_monthly123",
            "interval": "month",
            "amount": 500,
            "currency": "eur",
        },
        {
            "name": "yearly",
            "label": "Yearly",
            "description": "Two months free.",
            "price": "price_yearly456",
            "interval": "year",
            "amount": 5000,
            "currency": "eur",
        },
    ]
    assert api.get("/v1/plans").status_code == 401
    assert api.get("/v1/plans", headers=finance_key).status_code == 403


def test_subscription_sends_exact_parameters_with_the_email(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    resp = api.post(
        "/v1/checkout/subscription",
        json={"reader": "reader-42", "email": "ana@example.org", "plan": "monthly"},
        headers=site_key,
    )
    assert resp.status_code == 201, resp.get_json()
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form == {
        "mode": "subscription",
        "line_items[0][price]": "price_monthly123",
        "line_items[0][quantity]": "1",
        "client_reference_id": "reader-42",
        "customer_email": "ana@example.org",
        "metadata[kind]": "subscription",
        "metadata[reader]": "reader-42",
        "metadata[plan]": "monthly",
        "subscription_data[metadata][kind]": "subscription",
        "subscription_data[metadata][reader]": "reader-42",
        "subscription_data[metadata][plan]": "monthly",
        "success_url": f"{PUBLIC}/thanks?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{PUBLIC}/subscribe",
    }
    assert sent.headers["Authorization"] == "Bearer sk_test_checkout"
    assert sent.idempotency_key and sent.idempotency_key.startswith("paywall-subscription-")
    assert resp.get_json() == {
        "url": f"{stripe_api.url}/checkout/cs_test_fake0001",
        "session_id": "cs_test_fake0001",
    }


def test_subscription_reuses_the_readers_stripe_customer(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, db: Database
) -> None:
    add_customer(db, "reader-7", "cus_old", created=1)
    add_customer(db, "reader-7", "cus_current", created=2)
    # Neither a deleted customer nor one from the other Stripe mode is ever reused.
    add_customer(db, "reader-7", "cus_deleted", created=3, deleted=True)
    add_customer(db, "reader-7", "cus_live", created=4, livemode=True)
    resp = api.post(
        "/v1/checkout/subscription",
        json={
            "reader": "reader-7",
            "email": "other@example.org",
            "plan": "yearly",
            "campaign": "spring-2025",
            "success_url": "https://news.example.org/welcome",
            "cancel_url": "https://news.example.org/article/1",
        },
        headers=site_key,
    )
    assert resp.status_code == 201, resp.get_json()
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form["customer"] == "cus_current"
    assert "customer_email" not in sent.form
    assert sent.form["metadata[campaign]"] == "spring-2025"
    assert sent.form["subscription_data[metadata][campaign]"] == "spring-2025"
    assert sent.form["line_items[0][price]"] == "price_yearly456"
    assert sent.form["success_url"] == "https://news.example.org/welcome"
    assert sent.form["cancel_url"] == "https://news.example.org/article/1"


def test_subscription_falls_back_to_the_email_on_file(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, db: Database
) -> None:
    with db.transaction() as session:
        session.add(Reader(external_id="reader-9", email="nine@example.org"))
    resp = api.post(
        "/v1/checkout/subscription", json={"reader": "reader-9", "plan": "monthly"}, headers=site_key
    )
    assert resp.status_code == 201
    assert stripe_api.posts("/v1/checkout/sessions")[0].form["customer_email"] == "nine@example.org"


def test_a_double_click_makes_one_session(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"reader": "reader-42", "plan": "monthly"}
    first = api.post("/v1/checkout/subscription", json=body, headers=site_key)
    second = api.post("/v1/checkout/subscription", json=body, headers=site_key)
    assert first.get_json() == second.get_json()
    keys = [r.idempotency_key for r in stripe_api.posts("/v1/checkout/sessions")]
    assert len(keys) == 2 and keys[0] == keys[1]

    # Another plan is another request: another key (Stripe refuses a key reused with new parameters).
    other = api.post("/v1/checkout/subscription", json={**body, "plan": "yearly"}, headers=site_key)
    assert other.get_json()["session_id"] != first.get_json()["session_id"]
    assert stripe_api.posts("/v1/checkout/sessions")[2].idempotency_key != keys[0]

    # A minute later the same click is a new attempt.
    later = clock.now() + dt.timedelta(seconds=sessions.IDEMPOTENCY_WINDOW_SECONDS)
    monkeypatch.setattr(clock, "now", lambda: later)
    again = api.post("/v1/checkout/subscription", json=body, headers=site_key)
    assert stripe_api.posts("/v1/checkout/sessions")[3].idempotency_key != keys[0]
    assert again.get_json()["session_id"] != first.get_json()["session_id"]


def test_unknown_and_placeholder_plans(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    api = make_client(plans={})  # the shipped example plan only
    resp = api.post("/v1/checkout/subscription", json={"reader": "r1", "plan": "nope"}, headers=site_key)
    assert resp.status_code == 404
    assert resp.get_json()["errors"] == {"plan": ["No such plan."]}
    resp = api.post("/v1/checkout/subscription", json={"reader": "r1", "plan": "monthly"}, headers=site_key)
    assert resp.status_code == 503
    assert resp.get_json()["setting"] == "plans.monthly.price"
    assert stripe_api.requests == []


def test_subscription_validation(api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe) -> None:
    cases = [
        ({"plan": "monthly"}, "reader"),
        ({"reader": "r", "plan": "monthly", "email": "not-an-email"}, "email"),
        ({"reader": "r", "plan": "monthly", "success_url": "javascript:alert(1)"}, "success_url"),
        ({"reader": "r", "plan": "monthly", "colour": "red"}, "colour"),
        ({"reader": "r" * 129, "plan": "monthly"}, "reader"),
    ]
    for body, field in cases:
        resp = api.post("/v1/checkout/subscription", json=body, headers=site_key)
        assert resp.status_code == 422, body
        assert field in resp.get_json()["errors"], resp.get_json()
    assert stripe_api.requests == []


def test_one_off_donation_sends_exact_parameters(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    resp = api.post(
        "/v1/checkout/donation",
        json={
            "reader": "reader-42",
            "email": "ana@example.org",
            "amount": 1500,
            "currency": "EUR",
            "interval": "once",
            "campaign": "footer",
        },
        headers=site_key,
    )
    assert resp.status_code == 201, resp.get_json()
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form == {
        "mode": "payment",
        "submit_type": "donate",
        "payment_intent_data[metadata][kind]": "donation",
        "payment_intent_data[metadata][reader]": "reader-42",
        "payment_intent_data[metadata][campaign]": "footer",
        "line_items[0][price_data][currency]": "eur",
        "line_items[0][price_data][unit_amount]": "1500",
        "line_items[0][price_data][product_data][name]": "Donation",
        "line_items[0][quantity]": "1",
        "client_reference_id": "reader-42",
        "customer_email": "ana@example.org",
        "customer_creation": "always",
        "metadata[kind]": "donation",
        "metadata[reader]": "reader-42",
        "metadata[campaign]": "footer",
        "success_url": f"{PUBLIC}/thanks?kind=donation&session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{PUBLIC}/donate",
    }
    assert sent.idempotency_key and sent.idempotency_key.startswith("paywall-donation-")


def test_recurring_donation_sends_exact_parameters(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, db: Database
) -> None:
    add_customer(db, "reader-5", "cus_five")
    resp = api.post(
        "/v1/checkout/donation",
        json={"reader": "reader-5", "amount": 300, "currency": "usd", "interval": "month"},
        headers=site_key,
    )
    assert resp.status_code == 201, resp.get_json()
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form == {
        "mode": "subscription",
        "subscription_data[metadata][kind]": "donation",
        "subscription_data[metadata][reader]": "reader-5",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "300",
        "line_items[0][price_data][product_data][name]": "Donation",
        "line_items[0][price_data][recurring][interval]": "month",
        "line_items[0][quantity]": "1",
        "client_reference_id": "reader-5",
        "customer": "cus_five",
        "metadata[kind]": "donation",
        "metadata[reader]": "reader-5",
        "success_url": f"{PUBLIC}/thanks?kind=donation&session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{PUBLIC}/donate",
    }


def test_yearly_guest_donation(api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe) -> None:
    resp = api.post(
        "/v1/checkout/donation",
        json={"amount": 100000, "currency": "gbp", "interval": "year"},
        headers=site_key,
    )
    assert resp.status_code == 201
    form = stripe_api.posts("/v1/checkout/sessions")[0].form
    assert form["line_items[0][price_data][recurring][interval]"] == "year"
    assert form["metadata[kind]"] == "donation"
    assert not any(
        k in form for k in ("client_reference_id", "customer", "customer_email", "metadata[reader]")
    )


def test_anonymous_guests_never_share_a_session_but_a_site_key_dedupes(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    body = {"amount": 1000, "currency": "eur", "interval": "once"}
    a = api.post("/v1/checkout/donation", json=body, headers=site_key)
    b = api.post("/v1/checkout/donation", json=body, headers=site_key)
    assert a.get_json()["session_id"] != b.get_json()["session_id"]
    headers = {**site_key, "Idempotency-Key": "button-123"}
    c = api.post("/v1/checkout/donation", json=body, headers=headers)
    d = api.post("/v1/checkout/donation", json=body, headers=headers)
    assert c.get_json()["session_id"] == d.get_json()["session_id"]
    keys = [r.idempotency_key for r in stripe_api.posts("/v1/checkout/sessions")]
    assert keys[0] != keys[1] and keys[2] == keys[3]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 1000, "currency": "jpy", "interval": "once"}, "currency"),
        ({"amount": 199, "currency": "eur", "interval": "once"}, "amount"),
        ({"amount": 100001, "currency": "usd", "interval": "month"}, "amount"),
        ({"amount": 0, "currency": "eur", "interval": "once"}, "amount"),
        ({"amount": "1000", "currency": "eur", "interval": "once"}, "amount"),
        ({"amount": 10.5, "currency": "eur", "interval": "once"}, "amount"),
        ({"amount": 1000, "currency": "euro", "interval": "once"}, "currency"),
        ({"amount": 1000, "currency": "eur", "interval": "weekly"}, "interval"),
        ({"amount": 1000, "currency": "eur"}, "interval"),
        ({"amount": 1000, "currency": "eur", "interval": "once", "campaign": "bad campaign!"}, "campaign"),
    ],
)
def test_donation_validation_names_the_field(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, body: dict[str, Any], field: str
) -> None:
    resp = api.post("/v1/checkout/donation", json=body, headers=site_key)
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert list(resp.get_json()["errors"]) == [field]
    assert stripe_api.requests == []


def test_donation_bounds_come_from_configuration(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    api = make_client(
        donations={
            "currencies": ["jpy"],
            "default_currency": "jpy",
            "limits": {"jpy": {"min": 500, "max": 50000}},
        }
    )
    ok = api.post(
        "/v1/checkout/donation", json={"amount": 500, "currency": "jpy", "interval": "once"}, headers=site_key
    )
    assert ok.status_code == 201
    assert (
        stripe_api.posts("/v1/checkout/sessions")[0].form["line_items[0][price_data][unit_amount]"] == "500"
    )
    low = api.post(
        "/v1/checkout/donation", json={"amount": 499, "currency": "jpy", "interval": "once"}, headers=site_key
    )
    assert low.status_code == 422
    assert low.get_json()["errors"]["amount"] == ["Must be between 500 JPY and 50000 JPY (in minor units)."]
    eur = api.post(
        "/v1/checkout/donation", json={"amount": 500, "currency": "eur", "interval": "once"}, headers=site_key
    )
    assert eur.get_json()["errors"] == {"currency": ["Not accepted; use one of JPY."]}


def test_portal_for_a_reader_with_a_customer(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, db: Database
) -> None:
    add_customer(db, "reader-3", "cus_three")
    resp = api.post("/v1/portal", json={"reader": "reader-3"}, headers=site_key)
    assert resp.status_code == 201, resp.get_json()
    (sent,) = stripe_api.posts("/v1/billing_portal/sessions")
    assert sent.form == {"customer": "cus_three", "return_url": f"{PUBLIC}/thanks?from=portal"}
    assert resp.get_json() == {"url": f"{stripe_api.url}/portal/bps_fake0001"}
    api.post(
        "/v1/portal",
        json={"reader": "reader-3", "return_url": "https://news.example.org/account"},
        headers=site_key,
    )
    assert (
        stripe_api.posts("/v1/billing_portal/sessions")[1].form["return_url"]
        == "https://news.example.org/account"
    )


def test_portal_without_a_customer_is_404(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, db: Database
) -> None:
    with db.transaction() as session:
        session.add(Reader(external_id="reader-0"))
    for reader in ("reader-0", "never-seen"):
        resp = api.post("/v1/portal", json={"reader": reader}, headers=site_key)
        assert resp.status_code == 404
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["errors"] == {"reader": ["No Stripe customer."]}
    assert stripe_api.requests == []


def test_stripe_error_answers_are_502_with_message_and_request_id(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    stripe_api.fail_next(400, stripe_error_body("No such price: 'price_monthly123'", code="resource_missing"))
    resp = api.post("/v1/checkout/subscription", json={"reader": "r1", "plan": "monthly"}, headers=site_key)
    assert resp.status_code == 502
    assert resp.mimetype == "application/problem+json"
    assert "No such price" in resp.get_json()["detail"]
    assert resp.get_json()["stripe_code"] == "resource_missing"
    assert resp.get_json()["stripe_request_id"].startswith("req_fake")


def test_stripe_500_is_retried_under_one_key_then_502(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    stripe_api.fail_next(500, times=3)
    resp = api.post(
        "/v1/checkout/donation",
        json={"reader": "r1", "amount": 500, "currency": "eur", "interval": "once"},
        headers=site_key,
    )
    assert resp.status_code == 502
    assert resp.get_json()["stripe_request_id"].startswith("req_fake")
    attempts = stripe_api.posts("/v1/checkout/sessions")
    assert len(attempts) == 3
    assert len({a.idempotency_key for a in attempts}) == 1


def test_stripe_429_is_retried_when_stripe_says_so_else_502(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    """A 429 that Stripe marks retryable (lock contention) is retried under the same idempotency
    key; a plain rate limit is not hammered: the reader gets a clear 502 at once."""
    body = {"reader": "r1", "amount": 500, "currency": "eur", "interval": "once"}
    stripe_api.fail_next(
        429,
        stripe_error_body("Lock timeout", code="lock_timeout"),
        times=1,
        **{"Stripe-Should-Retry": "true"},
    )
    resp = api.post("/v1/checkout/donation", json=body, headers=site_key)
    assert resp.status_code == 201, resp.get_json()
    attempts = stripe_api.posts("/v1/checkout/sessions")
    assert len(attempts) == 2 and len({a.idempotency_key for a in attempts}) == 1

    stripe_api.fail_next(429, stripe_error_body("Too many requests", code="rate_limit"), times=1)
    resp = api.post("/v1/checkout/donation", json={**body, "amount": 700}, headers=site_key)
    assert resp.status_code == 502
    assert "Too many requests" in resp.get_json()["detail"]
    assert resp.mimetype == "application/problem+json"


def test_stripe_timeout_is_502(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "CHECKOUT_TIMEOUT_SECONDS", 0.3)
    stripe_api.delay_next(5, times=3)
    resp = api.post("/v1/portal", json={"reader": "r1"}, headers=site_key)
    assert resp.status_code == 404  # no customer: Stripe is never asked
    resp = api.post("/v1/checkout/subscription", json={"reader": "r1", "plan": "monthly"}, headers=site_key)
    assert resp.status_code == 502
    assert resp.get_json()["detail"] == "Stripe: Stripe could not be reached."


def test_stripe_unreachable_is_502(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "CHECKOUT_TIMEOUT_SECONDS", 0.5)
    api = make_client({"PAYWALL_STRIPE_API_BASE": "http://127.0.0.1:9"})  # discard port: refused
    resp = api.post("/v1/checkout/subscription", json={"reader": "r1", "plan": "monthly"}, headers=site_key)
    assert resp.status_code == 502
    assert resp.mimetype == "application/problem+json"


def test_stripe_not_configured_is_503(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str]
) -> None:
    api = make_client({"PAYWALL_STRIPE_SECRET_KEY": ""})
    resp = api.post(
        "/v1/checkout/donation", json={"amount": 500, "currency": "eur", "interval": "once"}, headers=site_key
    )
    assert resp.status_code == 503
    assert resp.get_json()["setting"] == "PAYWALL_STRIPE_SECRET_KEY"


def test_api_donations_are_limited_per_reader(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    api = make_client(ratelimit={"checkout_per_reader": "2/minute"})
    body = {"reader": "tester", "amount": 500, "currency": "eur", "interval": "once"}
    for amount in (500, 600):
        assert (
            api.post("/v1/checkout/donation", json={**body, "amount": amount}, headers=site_key).status_code
            == 201
        )
    resp = api.post("/v1/checkout/donation", json={**body, "amount": 700}, headers=site_key)
    assert resp.status_code == 429
    assert resp.mimetype == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert len(stripe_api.posts("/v1/checkout/sessions")) == 2
    # Another reader (and guests) are not held up by this one.
    assert (
        api.post(
            "/v1/checkout/donation", json={**body, "reader": "someone-else"}, headers=site_key
        ).status_code
        == 201
    )
    guest = {k: v for k, v in body.items() if k != "reader"}
    assert api.post("/v1/checkout/donation", json=guest, headers=site_key).status_code == 201


def test_keyless_calls_do_not_spend_a_readers_donation_attempts(
    make_client: Callable[..., FlaskClient],
    site_key: dict[str, str],
    finance_key: dict[str, str],
    stripe_api: FakeStripe,
) -> None:
    """Issue 13, point 9: anyone could lock a reader's donations for an hour with keyless calls."""
    # (Failed keys are throttled per address too, test_security.py; here only the reader's limit.)
    api = make_client(
        ratelimit={"checkout_per_reader": "2/minute", "auth_failures_per_address": "1000/minute"}
    )
    body = {"reader": "victim", "amount": 500, "currency": "eur", "interval": "once"}
    for n in range(30):
        resp = api.post("/v1/checkout/donation", json={**body, "amount": 500 + n})
        assert resp.status_code == 401, (n, resp.status_code)
        forged = {"Authorization": "Bearer pw_0000000000000000_forged"}
        assert api.post("/v1/checkout/donation", json=body, headers=forged).status_code == 401
        assert api.post("/v1/checkout/donation", json=body, headers=finance_key).status_code == 403
    for amount in (500, 600):
        resp = api.post("/v1/checkout/donation", json={**body, "amount": amount}, headers=site_key)
        assert resp.status_code == 201, resp.get_json()
    assert (
        api.post("/v1/checkout/donation", json={**body, "amount": 700}, headers=site_key).status_code == 429
    )
    # Over the limit, a keyless call is still a 401, never a 429 that would confirm the reader.
    assert api.post("/v1/checkout/donation", json=body).status_code == 401
    assert len(stripe_api.posts("/v1/checkout/sessions")) == 2


def _redis_url() -> str | None:
    """The Redis of this machine (CI has one on 127.0.0.1:6379), or None."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return "redis://127.0.0.1:6379/15"
    except OSError:
        return None


@pytest.mark.skipif(_redis_url() is None, reason="no Redis on 127.0.0.1:6379 (CI has one; .ci/run says so)")
def test_limits_are_shared_across_hosts_through_redis(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    """Two app instances (two hosts behind a load balancer) count one reader's attempts together."""
    import redis

    url = _redis_url()
    assert url is not None
    redis.Redis.from_url(url).flushdb()
    conf = {"storage_uri": url, "checkout_per_reader": "2/minute"}
    host_a, host_b = make_client(ratelimit=conf), make_client(ratelimit=conf)
    body = {"reader": "shared-reader", "amount": 500, "currency": "eur", "interval": "once"}
    assert host_a.post("/v1/checkout/donation", json=body, headers=site_key).status_code == 201
    assert (
        host_b.post("/v1/checkout/donation", json={**body, "amount": 600}, headers=site_key).status_code
        == 201
    )
    resp = host_a.post("/v1/checkout/donation", json={**body, "amount": 700}, headers=site_key)
    assert resp.status_code == 429 and resp.mimetype == "application/problem+json"
    assert len(stripe_api.posts("/v1/checkout/sessions")) == 2
    redis.Redis.from_url(url).flushdb()
