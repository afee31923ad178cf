"""``paywall stripe sync``: page through Stripe's API and upsert through the handlers' functions.

The repair for missed webhooks and the only source of fees (webhook payloads carry only the
balance transaction's id). A fetched object is the current state, so it is applied with the fetch
time and beats any event from the same second (see ``sync.ordering`` for the rule).

Then the charge of every refund whose charge was never recorded as a payment (older than the
service, or than ``--since``) is fetched, so the refund goes with its payment. Last, the balance
transactions of every automatic payout whose state changed since they were last listed
(``/v1/balance_transactions?payout=po_…``) are recorded in ``payout_transactions``: the payout
report links each to its payment, refund, dispute or fee.

Progress is kept in ``sync_cursors``: a ``run`` row (open while a run is under way) and one row per
list with the last object id done. Running again after an interruption resumes each list where it
stopped; a finished run makes the next one start from the beginning.

A list that fails (an endpoint the API base does not serve, a key not allowed to read it, Stripe
down) does not stop the others: the run goes on, reports it, and the next run resumes that list
where it failed while doing the others in full. Only a refused key stops the run (every list would
fail); then it stays open and the next run resumes it. The tally lists every row the run created or
changed, with the changed columns, taken from the session at each flush.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import stripe
from sqlalchemy import event, exists, func, inspect, select
from sqlalchemy.orm import Session, UOWTransaction

from paywall import clock
from paywall.db import Database
from paywall.models import Payment, Payout, Refund, SyncCursor
from paywall.webhooks.handlers import related_ids
from paywall.webhooks.inbox import lock_key, take_locks
from paywall.webhooks.sync import (
    checkout_sessions,
    customers,
    disputes,
    invoices,
    payments,
    payouts,
    refunds,
    subscriptions,
)
from paywall.webhooks.sync.derived import settled
from paywall.webhooks.sync.fields import InvalidField, Obj, safe_id
from paywall.webhooks.sync.ordering import Source

RUN = "run"
PAGE_SIZE = 100


def _charge(session: Session, obj: Obj, src: Source) -> str:
    outcome = payments.upsert_charge(session, obj, src)
    pi = obj.get("payment_intent")
    if isinstance(pi, Mapping):
        # Expanded: the intent's metadata (reader, campaign, appeal, kind) is only there.
        payments.upsert_payment_intent(session, pi, src)
    return outcome


def _invoice(session: Session, obj: Obj, src: Source) -> str:
    return invoices.upsert_invoice(session, obj, src)


def _balance_transaction(session: Session, obj: Obj, src: Source) -> str:
    return payments.apply_balance_transaction(session, obj)


@dataclass(frozen=True)
class StripeList:
    name: str
    path: str
    params: Mapping[str, Any]
    apply: Callable[[Session, Obj, Source], str]


CHARGES = StripeList("charges", "/v1/charges", {"expand": ["data.payment_intent"]}, _charge)
LISTS = (
    StripeList("customers", "/v1/customers", {}, lambda s, o, src: customers.upsert_customer(s, o, src)),
    StripeList("subscriptions", "/v1/subscriptions", {"status": "all"}, subscriptions.upsert_subscription),
    StripeList(
        "checkout_sessions",
        "/v1/checkout/sessions",
        {"status": "complete"},
        checkout_sessions.upsert_checkout_session,
    ),
    StripeList("invoices", "/v1/invoices", {"expand": ["data.payments"]}, _invoice),
    CHARGES,
    StripeList("refunds", "/v1/refunds", {}, refunds.upsert_refund),
    StripeList("disputes", "/v1/disputes", {}, disputes.upsert_dispute),
    StripeList("balance_transactions", "/v1/balance_transactions", {}, _balance_transaction),
    StripeList("payouts", "/v1/payouts", {}, payouts.upsert_payout),
)
# Not a list of its own: the transactions of each payout, listed after the lists (see the docstring).
PAYOUT_TRANSACTIONS = "payout_transactions"


# Bookkeeping columns, not facts about the object: left out of the changed fields.
UNREPORTED = {"synced_event_at", "synced_event_id", "updated_at"}


@dataclass
class RowChange:
    """One row the run created or changed: its table, its key (the Stripe id), the changed columns."""

    table: str
    key: str
    created: bool = False
    fields: set[str] = field(default_factory=set)

    def line(self) -> str:
        what = "created" if self.created else ", ".join(sorted(self.fields))
        return f"{self.table} {self.key}: {what}"


def _row_key(obj: Any) -> tuple[str, str]:
    """(table, key): the row's first unique column (its Stripe id, a reader's id), else its primary key."""
    mapper = inspect(obj).mapper
    table = mapper.local_table
    for column in table.columns:
        if column.unique and not column.primary_key:
            value = getattr(obj, mapper.get_property_by_column(column).key, None)
            if value is not None:
                return str(table.name), str(value)
    return str(table.name), ",".join(str(v) for v in mapper.primary_key_from_instance(obj))


@dataclass
class Tally:
    """What a run changed, per list and outcome (created, updated, unchanged, stale, ignored,
    invalid; missing for a refund's charge Stripe no longer knows), the rows it created or changed,
    the lists that failed (name -> reason), and why it stopped, if so."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    changes: dict[tuple[str, str], RowChange] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None
    # Objects no real Stripe object looks like ("charges ch_…: amount: must be …"), not applied.
    invalid: list[str] = field(default_factory=list)
    # Rows flushed since the last keep(): reported only once their savepoint or transaction holds.
    _pending: list[tuple[Any, bool, set[str]]] = field(default_factory=list)

    def add(self, name: str, outcome: str) -> None:
        self.counts.setdefault(name, Counter())[outcome] += 1

    def watch(self, session: Session) -> None:
        """Record, at each flush of ``session``, the rows it creates or changes."""
        event.listen(session, "before_flush", self._before_flush)

    def _before_flush(self, session: Session, _flush: UOWTransaction, _instances: Any) -> None:
        for obj in session.new:
            self._pending.append((_row_key(obj), True, set()))
        for obj in session.dirty:
            state = inspect(obj)
            fields = {
                prop.columns[0].name
                for prop in state.mapper.column_attrs
                if prop.key not in UNREPORTED and state.attrs[prop.key].history.has_changes()
            }
            if fields:
                self._pending.append((_row_key(obj), False, fields))

    def keep(self) -> None:
        """Report the rows flushed since the last keep() or drop(): their work was committed."""
        for (table, key), created, fields in self._pending:
            found = self.changes.get((table, key))
            if found is None:
                found = self.changes[(table, key)] = RowChange(table, key)
            found.created = found.created or created
            found.fields |= fields
        self._pending.clear()

    def drop(self) -> None:
        """Forget the rows flushed since the last keep(): their savepoint was rolled back."""
        self._pending.clear()

    def lines(self) -> Iterator[str]:
        for name in [item.name for item in LISTS] + [PAYOUT_TRANSACTIONS]:
            counts = self.counts.get(name, Counter())
            note = " (resumed)" if name in self.resumed else ""
            if name in self.failed:
                note += f" (FAILED: {self.failed[name]})"
            parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
            yield f"{name}: {parts}{note}"

    def change_lines(self) -> Iterator[str]:
        """One line per row created or changed, in the order the run first touched them."""
        for change in self.changes.values():
            if change.table != SyncCursor.__tablename__:
                yield change.line()

    @property
    def changed(self) -> int:
        return sum(c["created"] + c["updated"] for c in self.counts.values())


def _lock_page(session: Session, objects: list[Obj]) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    take_locks(session, sorted({lock_key(i) for obj in objects for i in related_ids(obj)}))


def _cursor(session: Session, name: str) -> SyncCursor:
    row = session.get(SyncCursor, name)
    if row is None:
        row = SyncCursor(name=name)
        session.add(row)
    return row


def _begin_run(db: Database, since: dt.datetime | None) -> dt.datetime:
    """The start time of the run to work on: the open one (same ``since``), or a new one."""
    with db.transaction() as session:
        run = _cursor(session, RUN)
        if run.started_at is not None and run.completed_at is None and run.since == since:
            return run.started_at
        run.started_at = clock.now()
        run.since = since
        run.completed_at = None
        run.cursor = None
        run.updated_at = clock.now()
        return run.started_at


def run_sync(
    db: Database,
    client: stripe.StripeClient,
    *,
    since: dt.datetime | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[str], None] | None = None,
) -> Tally:
    """Page through every list and upsert what Stripe has; resumable, and a list that fails does
    not stop the others (see the module docstring)."""
    started = _begin_run(db, since)
    tally = Tally()
    for item in LISTS:
        with db.transaction() as session:
            cur = _cursor(session, item.name)
            if cur.started_at == started and cur.completed_at is not None:
                tally.resumed.append(item.name)
                continue
            if cur.cursor and cur.completed_at is None and cur.since == since:
                # Interrupted in this run, or failed in an earlier one: go on from there.
                tally.resumed.append(item.name)
                starting_after: str | None = cur.cursor
                cur.started_at = started
            else:
                cur.started_at, cur.cursor, cur.completed_at, cur.since = started, None, None, since
                starting_after = None
        try:
            _sync_list(db, client, item, tally, since, starting_after, page_size, progress)
        except stripe.AuthenticationError as exc:
            # The key is refused: every list would fail the same way. Stop; the run stays open.
            tally.stopped = _reason(exc)
            return tally
        except stripe.StripeError as exc:
            tally.failed[item.name] = _reason(exc)
    try:
        fetch_unmatched_charges(db, client, tally)
    except stripe.AuthenticationError as exc:
        tally.stopped = _reason(exc)
        return tally
    except stripe.StripeError as exc:
        # Reported on the charges line: these are charges, fetched one by one.
        tally.failed.setdefault("charges", _reason(exc))
    try:
        fetch_payout_transactions(db, client, tally, page_size)
    except stripe.AuthenticationError as exc:
        tally.stopped = _reason(exc)
        return tally
    except stripe.StripeError as exc:
        tally.failed[PAYOUT_TRANSACTIONS] = _reason(exc)
    with db.transaction() as session:
        run = _cursor(session, RUN)
        run.completed_at = clock.now()
    return tally


def _reason(exc: stripe.StripeError) -> str:
    """Stripe's message about a failed request, on one line, with its HTTP status."""
    message = " ".join(str(exc.user_message or exc).split()) or type(exc).__name__
    return f"{exc.http_status} {message}" if exc.http_status else message


def _sync_list(
    db: Database,
    client: stripe.StripeClient,
    item: StripeList,
    tally: Tally,
    since: dt.datetime | None,
    starting_after: str | None,
    page_size: int,
    progress: Callable[[str], None] | None,
) -> None:
    """Page through one list from ``starting_after``, committing each page and the cursor after it."""
    while True:
        params: dict[str, Any] = {"limit": page_size, **item.params}
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        if starting_after:
            params["starting_after"] = starting_after
        page = client.raw_request("get", item.path, **params).data
        objects = [o for o in page.get("data") or [] if isinstance(o, Mapping)]
        with db.transaction() as session:
            tally.watch(session)
            _lock_page(session, objects)
            _apply_page(session, item, objects, tally)
            if objects:
                starting_after = str(objects[-1].get("id"))
                cur = _cursor(session, item.name)
                cur.cursor = starting_after
                cur.updated_at = clock.now()
        tally.keep()
        if progress is not None:
            progress(f"{item.name}: {len(objects)} read")
        if not page.get("has_more") or not objects:
            break
    with db.transaction() as session:
        cur = _cursor(session, item.name)
        cur.completed_at = clock.now()
        cur.cursor = None


def _apply_page(session: Session, item: StripeList, objects: list[Obj], tally: Tally) -> None:
    """Upsert a page in one savepoint; if an object holds a value no real Stripe object has
    (fields.InvalidField), apply the others one by one and name the bad ones instead of failing."""
    at = clock.now()

    def source(obj: Obj) -> Source:
        return Source.fetch(livemode=bool(obj.get("livemode")), at=at)

    try:
        with settled(session):
            outcomes = [item.apply(session, obj, source(obj)) for obj in objects]
    except InvalidField:
        tally.drop()
    else:
        for outcome in outcomes:
            tally.add(item.name, outcome)
        return
    for obj in objects:
        try:
            with settled(session):
                outcome = item.apply(session, obj, source(obj))
        except InvalidField as exc:
            tally.drop()
            tally.add(item.name, "invalid")
            tally.invalid.append(f"{item.name} {safe_id(obj)}: {exc.describe(obj)}")
        else:
            tally.keep()
            tally.add(item.name, outcome)


def unmatched_charge_ids(session: Session) -> list[str]:
    """Charges that have refunds but no payment row."""
    return list(
        session.scalars(
            select(Refund.stripe_charge_id)
            .where(
                Refund.stripe_charge_id.is_not(None),
                ~exists().where(Payment.stripe_charge_id == Refund.stripe_charge_id),
            )
            .distinct()
            .order_by(Refund.stripe_charge_id)
        )
    )


def fetch_unmatched_charges(db: Database, client: stripe.StripeClient, tally: Tally) -> None:
    """Fetch and upsert the charge of each refund whose charge was never recorded (tallied under
    ``charges``); a charge Stripe no longer knows is tallied ``missing`` and the others go on."""
    with db.transaction(readonly=True) as session:
        charge_ids = unmatched_charge_ids(session)
    for charge_id in charge_ids:
        try:
            obj = client.raw_request(
                "get", f"/v1/charges/{quote(charge_id, safe='')}", expand=["payment_intent"]
            ).data
        except stripe.InvalidRequestError:
            tally.add("charges", "missing")
            continue
        with db.transaction() as session:
            tally.watch(session)
            _lock_page(session, [obj])
            _apply_page(session, CHARGES, [obj], tally)
        tally.keep()


def payouts_to_list(session: Session) -> list[tuple[str, bool]]:
    """(payout id, livemode) of each automatic payout whose transactions were never listed, or
    were listed in another state (say in transit, before its reconciliation completed). Stripe
    cannot list the transactions of a manual payout."""
    state = Payout.status + "/" + func.coalesce(Payout.reconciliation_status, "")
    rows = session.execute(
        select(Payout.stripe_payout_id, Payout.livemode)
        .where(Payout.automatic.is_(True), Payout.transactions_synced_state.is_distinct_from(state))
        .order_by(Payout.arrival_date, Payout.stripe_payout_id)
    )
    return [(pid, bool(live)) for pid, live in rows]


def fetch_payout_transactions(
    db: Database, client: stripe.StripeClient, tally: Tally, page_size: int = PAGE_SIZE
) -> None:
    """List and record the balance transactions of each payout ``payouts_to_list`` names, one
    transaction per payout (tallied under ``payout_transactions``)."""
    with db.transaction(readonly=True) as session:
        todo = payouts_to_list(session)
    for payout_id, livemode in todo:
        objects: list[Obj] = []
        starting_after: str | None = None
        while True:
            params: dict[str, Any] = {"payout": payout_id, "limit": page_size}
            if starting_after:
                params["starting_after"] = starting_after
            page = client.raw_request("get", "/v1/balance_transactions", **params).data
            batch = [o for o in page.get("data") or [] if isinstance(o, Mapping)]
            objects.extend(batch)
            if not page.get("has_more") or not batch:
                break
            starting_after = str(batch[-1].get("id"))
        with db.transaction() as session:
            tally.watch(session)
            row = session.scalar(select(Payout).where(Payout.stripe_payout_id == payout_id))
            if row is None:
                continue
            try:
                with settled(session):
                    outcomes = [
                        payouts.upsert_payout_transaction(session, bt, payout_id, livemode) for bt in objects
                    ]
            except InvalidField as exc:
                tally.drop()
                tally.add(PAYOUT_TRANSACTIONS, "invalid")
                tally.invalid.append(f"{PAYOUT_TRANSACTIONS} of {payout_id}: {exc}")
                continue
            for outcome in outcomes:
                tally.add(PAYOUT_TRANSACTIONS, outcome)
            row.transactions_synced_at = clock.now()
            row.transactions_synced_state = payouts.payout_state(row)
        tally.keep()
