"""The payouts report, end to end: ``paywall stripe sync`` against a local server speaking Stripe's
list API records payouts in two currencies (one failed, one manual) and their balance transactions
(a dispute and its reversal, a Stripe fee, a charge no payment matches); the report reconciles
every listed payout to 0 and lists the unmatched transaction apart."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import select, update

from paywall import auth, clock
from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Payment, Payout, PayoutTransaction
from paywall.reports.payouts import SUMS, payout_lines, totals
from paywall.reports.periods import Period
from paywall.webhooks.sync.ordering import Source
from paywall.webhooks.sync.payouts import upsert_payout, upsert_payout_transaction
from tests.conftest import truncate_all
from tests.support.billing_rows import payment, utc
from tests.support.stripe_events import load_scenario
from tests.support.stripe_payouts import balance_transaction, paid_out
from tests.webhooks.test_reconcile import FEE, FakeStripe, stripe_state, sync_cmd

QUERY = "/v1/reports/payouts?start=2026-09-01&end=2027-01-01&livemode=all"
SUB_CHARGE = "ch_1uTR50Qz8wLm3xTnXwfooTjn"  # a: 1500 usd
DONATION = "ch_1CqRspQz8wLm3xTnAmmTDyRh"  # b: 5000 usd
EUR_CHARGE = "ch_1JfPK3Qz8wLm3xTnWl9Oxtvn"  # h: 12000 eur
DISPUTE = "dp_1iD1IwQz8wLm3xTnqgpMcdUU"  # f: on the donation, -5000 and a 1500 fee
GONE_CHARGE = "ch_1GoneQz8wLm3xTnNeverSeen"  # paid out, but never recorded as a payment


def _charge_txn(lists: dict[str, list[dict[str, Any]]], charge_id: str) -> dict[str, Any]:
    """The charge's balance transaction as the stand-in lists it (fee ``FEE``), with Stripe's
    reporting category left out: older API versions have none, and the type must do."""
    (bt,) = [b for b in lists["/v1/balance_transactions"] if b["source"] == charge_id]
    return dict(bt)


def _stripe() -> FakeStripe:
    events = (
        load_scenario("monthly_subscription_checkout")
        + load_scenario("dispute_lost")
        + load_scenario("annual_trial_eur")
    )
    fake = FakeStripe(stripe_state(events))
    lists = fake.lists
    usd_1, usd_1_txns = paid_out(
        "po_1Usd1Qz8wLm3xTn",
        [
            _charge_txn(lists, SUB_CHARGE),
            _charge_txn(lists, DONATION),
            balance_transaction(
                "txn_1RadarFeeQz8wLm3xTn", type_="stripe_fee", reporting_category="fee", amount=-300
            ),
        ],
        currency="usd",
        arrival_date=1_789_000_000,
    )
    # Failed: the bank account was closed; Stripe puts the money back with a payout_failure
    # transaction, paid out in the next payout.
    usd_2, usd_2_txns = paid_out(
        "po_1Usd2FailedQz8wLm3xTn",
        [
            balance_transaction(
                "txn_1GoneQz8wLm3xTn",
                type_="charge",
                reporting_category="charge",
                amount=2000,
                fee=88,
                source=GONE_CHARGE,
            ),
        ],
        currency="usd",
        arrival_date=1_789_600_000,
        status="failed",
        failure_code="account_closed",
    )
    usd_3, usd_3_txns = paid_out(
        "po_1Usd3Qz8wLm3xTn",
        [
            balance_transaction(
                "txn_1Usd2FailureQz8wLm3xTn", type_="payout_failure", reporting_category="payout_reversal",
                amount=usd_2["amount"], source=usd_2["id"],
            ),
            balance_transaction(
                "txn_1u207kQz8wLm3xTnXY7EBueP", type_="adjustment", reporting_category="dispute",
                amount=-5000, fee=1500, source=DISPUTE,
            ),
            balance_transaction(
                "txn_1ReversalQz8wLm3xTn", type_="adjustment", reporting_category="dispute_reversal",
                amount=5000, source=DISPUTE,
            ),
        ],
        currency="usd",
        arrival_date=1_790_500_000,
    )  # fmt: skip
    eur_1, eur_1_txns = paid_out(
        "po_1Eur1Qz8wLm3xTn", [_charge_txn(lists, EUR_CHARGE)], currency="eur", arrival_date=1_790_600_000
    )
    # A manual payout: Stripe cannot say which transactions it paid out.
    eur_manual, _ = paid_out(
        "po_1EurManualQz8wLm3xTn",
        [balance_transaction("txn_unused", type_="charge", reporting_category="charge", amount=5000)],
        currency="eur",
        arrival_date=1_790_700_000,
        automatic=False,
        reconciliation_status="not_applicable",
    )
    lists["/v1/payouts"] = [eur_manual, eur_1, usd_3, usd_2, usd_1]
    fake.by_payout = {
        usd_1["id"]: usd_1_txns,
        usd_2["id"]: usd_2_txns,
        usd_3["id"]: usd_3_txns,
        eur_1["id"]: eur_1_txns,
    }
    for dispute in lists["/v1/disputes"]:
        dispute["status"] = "won"  # the reversal gave the money back
    return fake


@pytest.fixture
def payouts_stripe() -> Iterator[FakeStripe]:
    fake = _stripe()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_every_payout_reconciles_to_zero_and_the_unmatched_transaction_is_listed(
    runner: CliRunner,
    db: Database,
    client: FlaskClient,
    finance_key: dict[str, str],
    payouts_stripe: FakeStripe,
) -> None:
    result = sync_cmd(runner, payouts_stripe, "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert "payouts: 5 created" in result.output
    assert "payout_transactions: 12 created" in result.output
    listed = [
        q["payout"][0]
        for p, q in payouts_stripe.requests
        if p == "/v1/balance_transactions" and "payout" in q
    ]
    # Every automatic payout once (paged by two: the first has four transactions), never the manual one.
    assert sorted(set(listed)) == sorted(payouts_stripe.by_payout) and "po_1EurManualQz8wLm3xTn" not in listed

    body = client.get(QUERY, headers=finance_key).get_json()
    payouts = {r["payout"]: r for r in body["rows"] if not r["unmatched"]}
    assert list(payouts) == [
        "po_1Usd1Qz8wLm3xTn",
        "po_1Usd2FailedQz8wLm3xTn",
        "po_1Usd3Qz8wLm3xTn",
        "po_1Eur1Qz8wLm3xTn",
        "po_1EurManualQz8wLm3xTn",
    ]
    usd_1 = payouts["po_1Usd1Qz8wLm3xTn"]
    assert (usd_1["currency"], usd_1["amount"], usd_1["charges"], usd_1["fees"], usd_1["other"]) == (
        "usd",
        1500 + 5000 - 2 * FEE - 300,
        6500,
        -2 * FEE - 300,
        0,
    )
    assert usd_1["arrival_date"] == "2026-09-10T00:26:40Z" and usd_1["transactions"] == 3
    failed = payouts["po_1Usd2FailedQz8wLm3xTn"]
    assert (failed["status"], failed["amount"], failed["charges"], failed["fees"]) == (
        "failed",
        1912,
        2000,
        -88,
    )
    usd_3 = payouts["po_1Usd3Qz8wLm3xTn"]
    assert (usd_3["disputes"], usd_3["fees"], usd_3["other"], usd_3["amount"]) == (0, -1500, 1912, 412)
    eur = payouts["po_1Eur1Qz8wLm3xTn"]
    assert (eur["currency"], eur["amount"], eur["charges"], eur["fees"]) == ("eur", 12000 - FEE, 12000, -FEE)
    for row in payouts.values():
        assert (
            row["charges"]
            + row["refunds"]
            + row["disputes"]
            + row["fees"]
            + row["other"]
            + (row["difference"] or 0)
            == row["amount"]
            or row["difference"] is None
        )
    assert {p: r["difference"] for p, r in payouts.items()} == {
        "po_1Usd1Qz8wLm3xTn": 0,
        "po_1Usd2FailedQz8wLm3xTn": 0,
        "po_1Usd3Qz8wLm3xTn": 0,
        "po_1Eur1Qz8wLm3xTn": 0,
        # Not 0 but unknown: Stripe lists no transactions for a manual payout.
        "po_1EurManualQz8wLm3xTn": None,
    }
    (unmatched,) = [r for r in body["rows"] if r["unmatched"]]
    assert (unmatched["payout"], unmatched["transaction"], unmatched["source"], unmatched["charges"]) == (
        "po_1Usd2FailedQz8wLm3xTn",
        "txn_1GoneQz8wLm3xTn",
        GONE_CHARGE,
        2000,
    )
    totals = {t["currency"]: t for t in body["totals"]}
    assert totals["usd"]["amount"] == usd_1["amount"] + 1912 + 412 and totals["usd"]["difference"] == 0
    assert totals["eur"]["difference"] is None  # the manual payout's is unknown

    # The payments export names each payment's payout; nothing is missing any more.
    payments = client.get(QUERY.replace("payouts", "payments"), headers=finance_key).get_json()
    assert {r["charge"]: r["payout"] for r in payments["rows"]} == {
        SUB_CHARGE: "po_1Usd1Qz8wLm3xTn",
        DONATION: "po_1Usd1Qz8wLm3xTn",
        EUR_CHARGE: "po_1Eur1Qz8wLm3xTn",
    }
    assert payments["missing"] == {
        "payments": 3,
        "without_fee": 0,
        "without_payout": 0,
        "command": "paywall stripe sync",
        "note": None,
    }

    # CSV and XLSX carry the same figures, money in major units.
    text = client.get(QUERY + "&format=csv", headers=finance_key).get_data(as_text=True)
    lines = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["payout"], r["difference"]) for r in lines[:4]] == [
        ("po_1Usd1Qz8wLm3xTn", "0.00"),
        ("po_1Usd2FailedQz8wLm3xTn", "0.00"),
        ("po_1Usd3Qz8wLm3xTn", "0.00"),
        ("po_1Eur1Qz8wLm3xTn", "0.00"),
    ]
    assert lines[5]["unmatched"] == "true" and lines[5]["charges"] == "20.00"
    xlsx = client.get(QUERY + "&format=xlsx", headers=finance_key)
    sheet = load_workbook(io.BytesIO(xlsx.data), read_only=True).active
    assert sheet is not None
    cells = list(sheet.iter_rows(values_only=True))
    header = list(cells[0])
    assert cells[1][header.index("amount")] == pytest.approx(60.52)
    assert cells[1][header.index("difference")] == 0

    # Nothing changed at Stripe: the next run lists no payout's transactions again.
    seen = len(payouts_stripe.requests)
    again = sync_cmd(runner, payouts_stripe)
    assert again.exit_code == 0 and "payout_transactions: nothing" in again.output
    assert not [q for p, q in payouts_stripe.requests[seen:] if "payout" in q]


def test_a_payout_whose_transactions_do_not_add_up_shows_the_difference(
    runner: CliRunner,
    db: Database,
    client: FlaskClient,
    finance_key: dict[str, str],
    payouts_stripe: FakeStripe,
) -> None:
    """The difference is computed, never assumed: a transaction not (yet) listed shows in it."""
    po = payouts_stripe.lists["/v1/payouts"][-1]
    assert po["id"] == "po_1Usd1Qz8wLm3xTn"
    po["reconciliation_status"] = "in_progress"
    transactions = payouts_stripe.by_payout[po["id"]]
    fee = next(t for t in transactions if t["type"] == "stripe_fee")
    transactions.remove(fee)
    assert sync_cmd(runner, payouts_stripe).exit_code == 0
    rows = client.get(QUERY, headers=finance_key).get_json()["rows"]
    usd_1 = next(r for r in rows if r["payout"] == po["id"])
    assert (usd_1["reconciliation"], usd_1["fees"], usd_1["difference"]) == ("in_progress", -2 * FEE, -300)

    # Stripe completes the reconciliation: the next run lists the payout's transactions again.
    transactions.append(fee)
    po["reconciliation_status"] = "completed"
    assert sync_cmd(runner, payouts_stripe).exit_code == 0
    rows = client.get(QUERY, headers=finance_key).get_json()["rows"]
    usd_1 = next(r for r in rows if r["payout"] == po["id"])
    assert (usd_1["reconciliation"], usd_1["difference"]) == ("completed", 0)


def test_every_export_says_how_many_payments_lack_a_fee_or_payout(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        payment(s, fee_minor=None, paid_at=utc(2026, 3, 2))
        payment(s, paid_at=utc(2026, 3, 3))
        payment(s, paid_at=utc(2025, 3, 3), fee_minor=None)  # another period: not counted
    period = "start=2026-03-01&end=2026-04-01&livemode=all"
    note = (
        "1 of 2 payments have no Stripe fee yet and 2 are in no payout yet; the command paywall stripe "
        "sync fills them (a payment of the last few days may simply not be paid out yet)."
    )
    header = "payments=2; without_fee=1; without_payout=2; fill=paywall stripe sync"
    for report in ("revenue", "subscriptions", "payments", "payouts", "campaigns"):
        body = client.get(f"/v1/reports/{report}?{period}", headers=finance_key).get_json()
        assert body["missing"] == {
            "payments": 2,
            "without_fee": 1,
            "without_payout": 2,
            "command": "paywall stripe sync",
            "note": note,
        }, report
        for fmt in ("csv", "xlsx", "json"):
            resp = client.get(f"/v1/reports/{report}?{period}&format={fmt}", headers=finance_key)
            assert resp.headers["Paywall-Missing"] == header, (report, fmt)
        # A CSV stays rows and totals only: a note row would break whoever sums its columns.
        text = client.get(f"/v1/reports/{report}?{period}&format=csv", headers=finance_key).get_data(
            as_text=True
        )
        assert "paywall stripe sync" not in text
        xlsx = client.get(f"/v1/reports/{report}?{period}&format=xlsx", headers=finance_key)
        sheet = load_workbook(io.BytesIO(xlsx.data), read_only=True).active
        assert sheet is not None
        assert list(sheet.iter_rows(values_only=True))[-1][0] == note, report
    donors = client.get("/v1/reports/donors?year=2026&livemode=all", headers=finance_key).get_json()
    assert donors["missing"]["without_fee"] == 1

    # Nothing missing: no note in the sheet, zeros in the envelope and the header.
    with db.transaction() as s:
        s.execute(update(Payment).values(fee_minor=0))
        s.add_all(
            PayoutTransaction(
                stripe_balance_transaction_id=f"txn_paid_{p.id}",
                stripe_payout_id="po_1",
                stripe_source_id=p.stripe_charge_id,
                type="charge",
                category="charge",
                amount_minor=p.amount_minor,
                net_minor=p.amount_minor,
                currency="usd",
            )
            for p in s.scalars(select(Payment))
        )
    resp = client.get(f"/v1/reports/payments?{period}&format=xlsx", headers=finance_key)
    assert resp.headers["Paywall-Missing"] == header.replace("without_fee=1", "without_fee=0").replace(
        "without_payout=2", "without_payout=0"
    )
    sheet = load_workbook(io.BytesIO(resp.data), read_only=True).active
    assert sheet is not None
    assert list(sheet.iter_rows(values_only=True))[-1][0] != note
    rows = client.get(f"/v1/reports/payments?{period}", headers=finance_key).get_json()["rows"]
    assert [r["payout"] for r in rows] == ["po_1", "po_1"]


def test_what_is_missing_counts_the_payments_the_filters_keep(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        payment(s, fee_minor=None, paid_at=utc(2026, 3, 2), currency="usd", kind="donation")
        payment(s, fee_minor=None, paid_at=utc(2026, 3, 2), currency="eur", kind="subscription")
        payment(s, paid_at=utc(2026, 3, 3), currency="eur", kind="donation")
    period = "start=2026-03-01&end=2026-04-01&livemode=all"

    def gaps(query: str) -> tuple[int, int, int]:
        body = client.get(f"/v1/reports/payments?{period}&{query}", headers=finance_key).get_json()
        m = body["missing"]
        return m["payments"], m["without_fee"], m["without_payout"]

    assert gaps("") == (3, 2, 3)
    assert gaps("currency=EUR") == (2, 1, 2)
    assert gaps("kind=donation") == (2, 1, 2)
    assert gaps("currency=eur&kind=subscription") == (1, 1, 1)
    # Payouts take a currency but no kind: a payout pays out both kinds together.
    payouts = client.get(f"/v1/reports/payouts?{period}&currency=eur", headers=finance_key)
    assert payouts.status_code == 200 and payouts.get_json()["missing"]["payments"] == 2
    refused = client.get(f"/v1/reports/payouts?{period}&kind=donation", headers=finance_key)
    assert refused.status_code == 422 and "kind" in str(refused.get_json())


@pytest.mark.parametrize(
    ("key", "shown", "why"),
    [
        ("sk_test_abc", "test", "the mode of the configured Stripe key"),
        ("sk_live_abc", "live", "the mode of the configured Stripe key"),
        ("", "all", "no Stripe key is configured, so both modes"),
    ],
)
def test_page_shows_the_mode_of_the_key_what_is_missing_and_the_payouts(
    make_settings: Callable[..., Settings], db: Database, key: str, shown: str, why: str
) -> None:
    app = create_app(
        make_settings({"PAYWALL_SESSION_SECRET": "payouts-page-secret", "PAYWALL_STRIPE_SECRET_KEY": key}),
        db=db,
    )
    client = app.test_client()
    now = clock.now()
    with db.transaction() as s:
        payment(s, fee_minor=None, paid_at=now - dt.timedelta(days=3), livemode=False)
        payment(s, fee_minor=None, paid_at=now - dt.timedelta(days=3), livemode=True)
        s.add(
            Payout(
                stripe_payout_id="po_1PageQz8wLm3xTn",
                amount_minor=1234,
                currency="usd",
                status="in_transit",
                reconciliation_status="in_progress",
                automatic=True,
                arrival_date=now - dt.timedelta(days=1),
                livemode=False,
            )
        )
        _, finance = auth.create_key(s, role="finance", name="payouts-page")
    page = client.get("/reports").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    client.post("/reports/sign-in", data={"key": finance, "csrf_token": token.group(1)})
    html = client.get("/reports").get_data(as_text=True)
    assert f'<strong id="stripe-mode">{shown}</strong> ({why})' in html
    count = 2 if shown == "all" else 1
    assert (
        f"{count} of {count} payments of these\n  months have no Stripe fee yet and {count} are in no payout"
        in html
    )
    assert "<code>paywall stripe sync</code>\n  fills them" in html
    # The test-mode payout shows unless the page shows live money; not listed yet, so no difference.
    assert ("po_1PageQz8wLm3xTn" in html) == (shown != "live")
    if shown != "live":
        row = html[html.index("po_1PageQz8wLm3xTn") :].split("</tr>")[0]
        assert "in_transit" in row and "12.34 USD" in row and "—" in row  # difference unknown yet
    assert "/v1/reports/payouts?format=csv" in html


def test_cli_twin_gives_the_same_file_and_says_what_is_missing_on_stderr(
    runner: CliRunner, db: Database, client: FlaskClient, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        payment(s, fee_minor=None, paid_at=utc(2026, 3, 2))
        s.add(
            Payout(
                stripe_payout_id="po_1CliQz8wLm3xTn",
                amount_minor=941,
                currency="usd",
                status="paid",
                automatic=True,
                arrival_date=utc(2026, 3, 5),
            )
        )
    args = ["report", "payouts", "--start", "2026-03-01", "--end", "2026-04-01", "--livemode", "all"]
    result = runner.invoke(main, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    http = client.get(
        "/v1/reports/payouts?start=2026-03-01&end=2026-04-01&livemode=all&format=csv", headers=finance_key
    )
    assert result.stdout_bytes == http.get_data()
    assert b"po_1CliQz8wLm3xTn" in result.stdout_bytes
    assert (
        "1 of 1 payments have no Stripe fee yet" in result.stderr and "paywall stripe sync" in result.stderr
    )


# (type, reporting_category, report column, sign of the amount) as Stripe lists them.
KINDS = [
    ("charge", "charge", "charges", 1),
    ("payment", None, "charges", 1),  # an older API version: no reporting_category
    ("refund", "refund", "refunds", -1),
    ("payment_refund", "refund", "refunds", -1),
    ("refund_failure", "refund_failure", "refunds", 1),
    ("adjustment", "dispute", "disputes", -1),
    ("adjustment", "dispute_reversal", "disputes", 1),
    ("stripe_fee", "fee", "fees", -1),
    ("payout_failure", "payout_reversal", "other", 1),
    ("adjustment", "other_adjustment", "other", -1),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payouts=st.lists(
        st.tuples(
            st.sampled_from(["usd", "eur", "jpy"]),
            st.lists(
                st.tuples(st.sampled_from(KINDS), st.integers(1, 10**9), st.integers(0, 10**6)),
                min_size=1,
                max_size=8,
            ),
            st.booleans(),  # listed by the sync yet
        ),
        min_size=1,
        max_size=5,
    )
)
def test_listed_payouts_reconcile_to_zero_and_columns_add_up(db: Database, payouts: list[Any]) -> None:
    """Any mix of transactions: each column is the gross of its kinds, fees the fee transactions
    less every fee, the difference 0 once listed (unknown before), totals per currency exact."""
    truncate_all(db)
    expected: list[dict[str, Any]] = []
    with db.transaction() as s:
        for n, (currency, transactions, listed) in enumerate(payouts):
            txns = []
            columns = dict.fromkeys(SUMS, 0)
            for m, ((type_, category, column, sign), amount, fee) in enumerate(transactions):
                bt = balance_transaction(
                    f"txn_{n}_{m}", type_=type_, reporting_category="charge", amount=sign * amount, fee=fee,
                    currency=currency, source=f"src_{n}_{m}",
                )  # fmt: skip
                bt["reporting_category"] = category
                txns.append(bt)
                columns[column] += sign * amount
                columns["fees"] -= fee
            po, listing = paid_out(f"po_{n}", txns, currency=currency, arrival_date=1_789_000_000 + n)
            upsert_payout(s, po, Source.fetch())
            if listed:
                for bt in listing:
                    upsert_payout_transaction(s, bt, po["id"], False)
                s.flush()
                row = s.scalar(select(Payout).where(Payout.stripe_payout_id == po["id"]))
                assert row is not None
                row.transactions_synced_at = clock.now()
            expected.append({"currency": currency, "amount": po["amount"], **columns, "listed": listed})
    with db.transaction(readonly=True) as s:
        period = Period(dt.date(2026, 9, 1), dt.date(2026, 10, 1), ZoneInfo("UTC"))
        lines = payout_lines(s, period, None)
        got_totals = totals(lines)
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        assert (line.currency, line.amount) == (want["currency"], want["amount"])
        if want["listed"]:
            assert line.sums == {k: want[k] for k in SUMS} and line.difference == 0
        else:
            assert line.difference is None and line.sums == dict.fromkeys(SUMS, 0)
    for total in got_totals:
        mine = [w for w in expected if w["currency"] == total[4]]
        assert total[5] == sum(w["amount"] for w in mine)
        assert total[11] == (0 if all(w["listed"] for w in mine) else None)
