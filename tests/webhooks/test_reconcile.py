"""``paywall stripe sync`` against a local server speaking Stripe's list API (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.cli import main
from paywall.db import Database
from paywall.models import Dispute, Payment, Subscription, SyncCursor
from tests.support.stripe_events import applied, load_scenario
from tests.webhooks.test_scenarios import MONTHLY_SUB, check_dispute_lost, check_renewal_failed_then_recovered

PATHS = {
    "customer": "/v1/customers",
    "subscription": "/v1/subscriptions",
    "checkout.session": "/v1/checkout/sessions",
    "invoice": "/v1/invoices",
    "charge": "/v1/charges",
    "refund": "/v1/refunds",
    "dispute": "/v1/disputes",
    "balance_transaction": "/v1/balance_transactions",
    "payout": "/v1/payouts",
}
FEE = 74


def stripe_state(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """What Stripe's API would list after these events: the newest state of each object, newest
    first, with invoices' payments expanded and a balance transaction per charge."""
    latest: dict[str, dict[str, Any]] = {}
    invoice_payments: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        obj = event["data"]["object"]
        if obj["object"] == "invoice_payment":
            invoice_payments.setdefault(obj["invoice"], []).append(obj)
        elif obj["object"] == "payment_intent":
            continue
        else:
            latest[obj["id"]] = json.loads(json.dumps(obj))
    lists: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS.values()}
    for obj in latest.values():
        if obj["object"] == "invoice":
            obj["payments"] = {
                "object": "list",
                "data": invoice_payments.get(obj["id"], []),
                "has_more": False,
            }
        lists[PATHS[obj["object"]]].append(obj)
        if obj["object"] == "charge" and obj.get("balance_transaction"):
            lists[PATHS["balance_transaction"]].append(
                {
                    "id": obj["balance_transaction"],
                    "object": "balance_transaction",
                    "type": "charge",
                    "source": obj["id"],
                    "amount": obj["amount"],
                    "fee": FEE,
                    "net": obj["amount"] - FEE,
                    "currency": obj["currency"],
                    "created": obj["created"],
                }
            )
    for items in lists.values():
        items.sort(key=lambda o: o.get("created", 0), reverse=True)
    return lists


class FakeStripe:
    """A tiny Stripe: GET list endpoints with limit/starting_after paging; can fail one page."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]]) -> None:
        self.lists = lists
        # GET /v1/balance_transactions?payout=po_…: the transactions of each payout.
        self.by_payout: dict[str, list[dict[str, Any]]] = {}
        # Objects only retrievable by id (GET /v1/<list>/<id>), beside those in the lists.
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.fail_on: tuple[str, str] | None = None
        self.fail_status = 400
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                fake.requests.append((url.path, query))
                after = query.get("starting_after", [""])[0]
                if fake.fail_on == (url.path, after):
                    fake.fail_on = None
                    self._send(
                        fake.fail_status,
                        {"error": {"type": "invalid_request_error", "message": "injected failure"}},
                    )
                    return
                parent, _, object_id = url.path.rpartition("/")
                listed = {o["id"]: o for o in fake.lists.get(parent, [])}
                if url.path not in fake.lists and (object_id in fake.objects or object_id in listed):
                    self._send(200, fake.objects.get(object_id) or listed[object_id])
                    return
                if url.path not in fake.lists:
                    self._send(404, {"error": {"type": "invalid_request_error", "message": "no such list"}})
                    return
                items = fake.lists[url.path]
                if url.path == "/v1/balance_transactions" and "payout" in query:
                    items = fake.by_payout.get(query["payout"][0], [])
                limit = int(query.get("limit", ["10"])[0])
                start = 0
                if after:
                    start = next(i for i, o in enumerate(items) if o["id"] == after) + 1
                page = items[start : start + limit]
                self._send(
                    200,
                    {"object": "list", "url": url.path, "data": page, "has_more": start + limit < len(items)},
                )

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Request-Id", "req_local")
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe(stripe_state(load_scenario("renewal_failed_then_recovered")))
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def sync_cmd(runner: CliRunner, fake: FakeStripe, *args: str) -> Any:
    env = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_local", "PAYWALL_STRIPE_API_BASE": fake.base}
    return runner.invoke(main, ["stripe", "sync", *args], env=env)


def test_sync_builds_the_same_rows_as_the_webhooks_plus_fees(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe
) -> None:
    result = sync_cmd(runner, fake_stripe, "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert "charges: 3 created, 1 ignored" in result.output
    assert "balance_transactions: 3 updated" in result.output
    with db.transaction(readonly=True) as session:
        check_renewal_failed_then_recovered(session, None)
        for p in session.scalars(select(Payment)):
            assert (p.fee_minor, p.net_minor, p.balance_currency) == (FEE, p.amount_minor - FEE, "usd")
        done = {c.name: c for c in session.scalars(select(SyncCursor))}
        assert all(c.completed_at is not None and c.cursor is None for c in done.values())
    # Paging: two charges per page, so the second page starts after the second charge.
    charge_pages = [q for p, q in fake_stripe.requests if p == "/v1/charges"]
    assert len(charge_pages) == 2 and charge_pages[1]["starting_after"]

    again = sync_cmd(runner, fake_stripe)
    assert again.exit_code == 0 and "changed: 0" in again.output


def test_interrupted_sync_resumes_where_it_stopped(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe
) -> None:
    second_charge = fake_stripe.lists["/v1/charges"][1]["id"]
    # A refused key stops the run (every list would fail the same way); the run stays open.
    fake_stripe.fail_on = ("/v1/charges", second_charge)
    fake_stripe.fail_status = 401
    first = sync_cmd(runner, fake_stripe, "--page-size", "2", "--since", "2026-01-01")
    assert first.exit_code != 0 and "run again to resume" in first.output
    with db.transaction(readonly=True) as session:
        charges = session.get(SyncCursor, "charges")
        assert charges is not None and charges.cursor == second_charge and charges.completed_at is None
        customers = session.get(SyncCursor, "customers")
        assert customers is not None and customers.completed_at is not None
    seen = len(fake_stripe.requests)
    second = sync_cmd(runner, fake_stripe, "--page-size", "2", "--since", "2026-01-01")
    assert second.exit_code == 0, second.output
    assert "customers: nothing (resumed)" in second.output
    later = fake_stripe.requests[seen:]
    assert later[0][0] == "/v1/charges" and later[0][1]["starting_after"] == [second_charge]
    assert later[0][1]["created[gte]"] == ["1767225600"]
    with db.transaction(readonly=True) as session:
        check_renewal_failed_then_recovered(session, None)


def test_sync_list_that_fails_does_not_stop_the_others(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe
) -> None:
    """Issue 13, point 17: an endpoint the API base does not serve (disputes: 404) and a list that
    fails half-way (charges, page 2) are reported; every other list is synced; the exit code is 1."""
    disputes = fake_stripe.lists.pop("/v1/disputes")
    second_charge = fake_stripe.lists["/v1/charges"][1]["id"]
    fake_stripe.fail_on = ("/v1/charges", second_charge)
    first = sync_cmd(runner, fake_stripe, "--page-size", "2")
    assert first.exit_code == 1, first.output
    lines = first.output.splitlines()
    assert "charges: 1 created, 1 ignored (FAILED: 400 injected failure)" in lines
    assert "disputes: nothing (FAILED: 404 no such list)" in lines
    # The lists after the failed ones still ran (two fees wait for charges not synced yet).
    assert "balance_transactions: 2 ignored, 1 updated" in lines
    assert lines[-1] == (
        "Error: 2 of 9 lists failed: charges, disputes; the others were synced; "
        "run again to retry them from where they stopped"
    )
    assert fake_stripe.paths()[-1] == "/v1/payouts"

    # The next run does every list again, and the failed list from where it failed.
    fake_stripe.lists["/v1/disputes"] = disputes
    seen = len(fake_stripe.requests)
    second = sync_cmd(runner, fake_stripe, "--page-size", "2")
    assert second.exit_code == 0, second.output
    assert (
        "customers: 1 unchanged" in second.output
        and "charges: 2 created (resumed)" in second.output
        and "balance_transactions: 1 unchanged, 2 updated" in second.output
    )
    charges = [q for p, q in fake_stripe.requests[seen:] if p == "/v1/charges"]
    assert charges[0]["starting_after"] == [second_charge]
    with db.transaction(readonly=True) as session:
        check_renewal_failed_then_recovered(session, None)


def test_sync_reports_each_created_or_changed_row_with_id_and_fields(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe
) -> None:
    """Issue 13, point 17: the run ends with every row it created or changed, by id, with the
    changed columns (not the sync's own bookkeeping)."""
    first = sync_cmd(runner, fake_stripe)
    assert first.exit_code == 0, first.output
    charges = [c["id"] for c in fake_stripe.lists["/v1/charges"] if c.get("balance_transaction")]
    created = first.output.split("created or changed (table id: changed columns):\n", 1)[1]
    assert f"  subscriptions {MONTHLY_SUB}: created\n" in created
    for charge in charges:
        assert f"  payments {charge}: created\n" in created

    sub = next(s for s in fake_stripe.lists["/v1/subscriptions"] if s["id"] == MONTHLY_SUB)
    sub["cancel_at_period_end"] = True
    bt = fake_stripe.lists["/v1/balance_transactions"][0]
    bt["fee"], bt["net"] = 80, bt["amount"] - 80
    again = sync_cmd(runner, fake_stripe)
    assert again.exit_code == 0, again.output
    lines = again.output.splitlines()
    assert lines[:3] == [
        "created or changed (table id: changed columns):",
        f"  subscriptions {MONTHLY_SUB}: cancel_at_period_end",
        f"  payments {bt['source']}: fee_minor, net_minor",
    ]
    assert lines[-1] == "changed: 2"

    unchanged = sync_cmd(runner, fake_stripe)
    assert "created or changed" not in unchanged.output and "changed: 0" in unchanged.output


def test_fetched_state_beats_older_events(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe, client: FlaskClient
) -> None:
    assert sync_cmd(runner, fake_stripe).exit_code == 0
    past_due = next(
        e for e in load_scenario("renewal_failed_then_recovered") if e["id"] == "evt_1UX9HmQz8wLm3xTnRWokBpWl"
    )
    assert applied(client, past_due) == "processed"
    with db.transaction(readonly=True) as session:
        sub = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == MONTHLY_SUB))
        assert sub is not None and sub.status == "active"


def test_sync_records_refunds_and_disputes(runner: CliRunner, db: Database) -> None:
    fake = FakeStripe(stripe_state(load_scenario("dispute_lost")))
    fake.thread.start()
    try:
        assert sync_cmd(runner, fake).exit_code == 0
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    with db.transaction(readonly=True) as session:
        check_dispute_lost(session, False)
        (d,) = session.scalars(select(Dispute))
        assert d.fee_minor == 1500


def test_sync_without_secret_key_names_the_setting(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stripe", "sync"], env={"PAYWALL_STRIPE_SECRET_KEY": ""})
    assert result.exit_code != 0 and "PAYWALL_STRIPE_SECRET_KEY" in result.output


def test_sync_fetches_the_charge_of_a_refund_never_matched(
    runner: CliRunner, db: Database, client: FlaskClient, finance_key: dict[str, str]
) -> None:
    """A refund whose charge was never recorded (older than --since): sync fetches that charge."""
    state = stripe_state(load_scenario("donation_refund"))
    (charge,) = state["/v1/charges"]
    state["/v1/charges"] = []  # created before --since: not listed
    fake = FakeStripe(state)
    fake.objects[charge["id"]] = charge
    fake.thread.start()
    try:
        result = sync_cmd(runner, fake, "--since", "2026-09-07")
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    assert result.exit_code == 0, result.output
    assert "charges: 1 created" in result.output
    assert f"/v1/charges/{charge['id']}" in fake.paths()
    with db.transaction(readonly=True) as session:
        (p,) = session.scalars(select(Payment))
        assert (p.stripe_charge_id, p.amount_minor, p.refunded_minor) == (charge["id"], 5000, 5000)
    query = "?start=2026-09-01&end=2026-10-01&livemode=all"
    totals = client.get("/v1/reports/revenue" + query, headers=finance_key).get_json()["totals"]
    assert [(t["gross"], t["refunds"]) for t in totals] == [(5000, 5000)]
    rows = client.get("/v1/reports/payments" + query, headers=finance_key).get_json()["rows"]
    assert [(r["charge"], r["refunded"], r["unmatched"]) for r in rows] == [(charge["id"], 5000, False)]


def test_sync_page_size_default_is_the_reconcile_default() -> None:
    """The option's default is a literal (reading reconcile would import stripe for `--help`)."""
    from paywall.webhooks import reconcile
    from paywall.webhooks.cli import stripe_sync

    (option,) = [p for p in stripe_sync.params if p.name == "page_size"]
    assert option.default == reconcile.PAGE_SIZE


def test_sync_names_an_absurd_object_and_applies_the_rest_of_its_page(
    runner: CliRunner, db: Database, fake_stripe: FakeStripe
) -> None:
    """A fetched object with a value no real Stripe object has (a fractional amount) is not
    applied, and named with the field; the rest of its page and the other lists are synced, the
    row report leaves out what was rolled back, and the exit code is 1."""
    bad = fake_stripe.lists["/v1/charges"][0]
    bad["amount"] = 12.99
    result = sync_cmd(runner, fake_stripe, "--page-size", "2")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert f"  charges {bad['id']}: amount: must be a whole number of minor units, got float" in lines
    assert "charges: 2 created, 1 ignored, 1 invalid" in lines
    assert lines[-1] == "Error: 1 objects were not applied (listed above)"
    created = [line for line in lines if line.startswith("  payments ") and line.endswith(": created")]
    assert len(created) == 2 and not any(bad["id"] in line for line in created)
    with db.transaction(readonly=True) as session:
        charges = set(session.scalars(select(Payment.stripe_charge_id)))
    assert len(charges) == 2 and bad["id"] not in charges
