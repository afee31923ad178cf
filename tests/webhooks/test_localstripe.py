"""End to end against localstripe, a Stripe-speaking server on loopback (pre-2025 API shape).

localstripe runs in a subprocess; the service runs in a thread (werkzeug); localstripe delivers
signed webhooks to it; stripe-python (16) creates a customer with ``metadata.reader``, a plan and
a subscription; the reader view shows the subscription, then shows it canceled.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import stripe
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.serving import make_server

from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Payment, Payout, StripeCustomer
from paywall.stripe_gateway import make_client
from tests.conftest import WEBHOOK_SECRET
from tests.support.faults import free_port
from tests.support.servers import serving
from tests.support.stripe_events import applying

# localstripe's own entry point binds every interface and pickles its store to /tmp; this one
# binds loopback only and keeps the store in memory.
LAUNCHER = """
import sys
from aiohttp import web
from localstripe import resources
from localstripe.server import app
resources.store.dump_to_disk = lambda: None
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out; last value: {last!r}")


@pytest.fixture
def localstripe() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/v1/customers", auth=("sk_test_e2e", ""), timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=15)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def service(
    localstripe: str, make_settings: Callable[..., Settings], db: Database
) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(
        {
            "PAYWALL_STRIPE_API_BASE": localstripe,
            "PAYWALL_STRIPE_SECRET_KEY": "sk_test_e2e",
            "PAYWALL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    server = make_server("127.0.0.1", 0, create_app(settings, db=db), threaded=True)
    with serving(server), applying(db, settings):
        yield f"http://127.0.0.1:{server.server_port}", settings


def test_subscription_created_and_canceled_through_localstripe(
    service: tuple[str, Settings], localstripe: str, site_key: dict[str, str], db: Database
) -> None:
    url, settings = service
    registered = requests.post(
        f"{localstripe}/_config/webhooks/paywall",
        data={"url": f"{url}/webhooks/stripe", "secret": WEBHOOK_SECRET},
        timeout=5,
    )
    assert registered.ok

    client = make_client(settings)
    customer = client.v1.customers.create({"email": "e2e@example.org", "metadata": {"reader": "reader_e2e"}})
    card = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(card.id, {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": card.id}})
    plan = client.v1.plans.create(
        {
            "amount": 1500,
            "currency": "usd",
            "interval": "month",
            "nickname": "supporter_monthly",
            "product": {"name": "Supporter"},
        }
    )
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"plan": plan.id}]})
    assert sub.status == "active"

    def reader_view() -> dict[str, Any]:
        resp = requests.get(f"{url}/v1/readers/reader_e2e", headers=site_key, timeout=5)
        return dict(resp.json()["supporter"]) if resp.ok else {}

    def active() -> Any:
        current = reader_view().get("subscription")
        return current if current and current["status"] == "active" else None

    current = wait_for(active)
    assert current["stripe_subscription_id"] == sub.id
    assert (current["amount"], current["currency"], current["interval"]) == (1500, "usd", "month")
    assert current["plan"] == "supporter_monthly" and current["current_period_end"]
    assert current["cancel_at_period_end"] is False

    def payment() -> Any:
        with db.transaction(readonly=True) as session:
            return session.scalar(select(Payment).where(Payment.stripe_subscription_id == sub.id))

    paid = wait_for(payment)
    assert (paid.amount_minor, paid.currency, paid.kind) == (1500, "usd", "subscription")

    client.v1.subscriptions.cancel(sub.id)

    def canceled() -> Any:
        view = reader_view()
        subs = view.get("subscriptions") or []
        return view if view.get("subscription") is None and subs and subs[0]["status"] == "canceled" else None

    view = wait_for(canceled)
    assert view["subscriptions"][0]["stripe_subscription_id"] == sub.id

    events = requests.get(f"{url}/v1/events", headers=site_key, timeout=5)  # site keys may not read the inbox
    assert events.status_code == 403


def test_sync_against_localstripe_goes_past_the_lists_it_does_not_serve(
    localstripe: str, runner: CliRunner, db: Database
) -> None:
    """Issue 13, point 17, against a real Stripe-speaking server: localstripe serves no Checkout
    Sessions or disputes lists (404); the sync reports them and still syncs every other list."""
    env = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_e2e", "PAYWALL_STRIPE_API_BASE": localstripe}
    client = stripe.StripeClient("sk_test_e2e", base_addresses={"api": localstripe})
    customer = client.v1.customers.create(
        {"email": "sync@example.org", "metadata": {"reader": "reader_sync"}}
    )
    result = runner.invoke(main, ["stripe", "sync"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert f"  stripe_customers {customer.id}: created" in lines
    assert "customers: 1 created" in lines and "balance_transactions: nothing" in lines
    assert any(line.startswith("checkout_sessions: nothing (FAILED: 404 ") for line in lines)
    assert any(line.startswith("disputes: nothing (FAILED: 404 ") for line in lines)
    assert lines[-1].startswith("Error: 2 of 9 lists failed: checkout_sessions, disputes;")
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeCustomer).where(StripeCustomer.stripe_customer_id == customer.id))
        assert row is not None and row.reader_id is not None


def test_payouts_from_localstripe_webhooks_then_sync(
    service: tuple[str, Settings], localstripe: str, runner: CliRunner, db: Database
) -> None:
    """payout.created, payout.failed and payout.canceled as a Stripe-speaking server sends them
    record the payouts; `stripe sync` lists them too, and lists no transactions for them:
    localstripe's payouts are manual, and Stripe cannot say what a manual payout paid out."""
    url, settings = service
    registered = requests.post(
        f"{localstripe}/_config/webhooks/paywall",
        data={"url": f"{url}/webhooks/stripe", "secret": WEBHOOK_SECRET},
        timeout=5,
    )
    assert registered.ok
    client = make_client(settings)
    pending = client.v1.payouts.create({"amount": 4200, "currency": "eur"})
    # `status` is localstripe's way to make a payout fail; Stripe's API has no such parameter.
    fails: Any = {"amount": 1300, "currency": "eur", "status": "failed"}
    failed = client.v1.payouts.create(fails)
    client.v1.payouts.cancel(pending.id)

    def recorded() -> Any:
        with db.transaction(readonly=True) as session:
            rows = {p.stripe_payout_id: p for p in session.scalars(select(Payout))}
            done = rows.get(pending.id) and rows[pending.id].status == "canceled"
            return rows if done and rows.get(failed.id) and rows[failed.id].status == "failed" else None

    rows = wait_for(recorded)
    assert (rows[failed.id].amount_minor, rows[failed.id].currency, rows[failed.id].failure_code) == (
        1300,
        "eur",
        "could_not_process",
    )
    assert rows[pending.id].automatic is False and rows[pending.id].amount_minor == 4200

    env = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_e2e", "PAYWALL_STRIPE_API_BASE": localstripe}
    result = runner.invoke(main, ["stripe", "sync"], env=env)
    lines = result.output.splitlines()
    assert "payouts: 2 unchanged" in lines and "payout_transactions: nothing" in lines
