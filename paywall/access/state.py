"""Load everything the rules need about one reader id in ONE database round trip.

The access check runs on every article view, so the state is a single ``UNION ALL`` of small,
indexed lookups: the reader's subscriptions, the payments that can still matter (recent donations;
subscription payments in the current period), the comp, the reader row itself (registered? its
session version, so the browser route checks a reader token without a second query), the last
dismissal, this month's meter and, while ``[appeal] max_asks`` is set, the count of the reader's
recent asks (the ask budget). Unknown ids (a site's cookie ids) simply match no reader row: nothing
is created for them.

An anonymous browser (client mode, paywall/access/anonymous.py) is loaded by ``load_anonymous_state``:
its meter and dismissal under ``anonymous_key(id)`` and nothing else, by a statement that does not
touch the readers, subscriptions, payments or comps tables at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from paywall.access.anonymous import anonymous_key
from paywall.access.facts import CompFact, PaymentFact, ReaderState, SubscriptionFact
from paywall.access.settings import AccessSettings
from paywall.db import DriverStatement

# Columns: src, ref, kind, status, t1..t5, flag, n1..n3, ref2, t6. Each branch fills what it has.
_STATE_SQL = """
SELECT 'sub' AS src, s.stripe_subscription_id AS ref, s.kind AS kind, s.status AS status,
       s.current_period_start AS t1, s.current_period_end AS t2, s.trial_end AS t3,
       s.payment_failed_at AS t4, s.ended_at AS t5, s.cancel_at_period_end AS flag,
       NULL AS n1, NULL AS n2, NULL AS n3, s.pause_collection_behavior AS ref2,
       s.pause_collection_resumes_at AS t6
  FROM readers r JOIN subscriptions s ON s.reader_id = r.id
 WHERE r.external_id = :reader
UNION ALL
SELECT 'pay', p.stripe_charge_id, p.kind, p.dispute_status, p.paid_at, NULL, NULL, NULL, NULL, NULL,
       p.amount_minor, p.refunded_minor, p.disputed_minor, p.stripe_subscription_id, NULL
  FROM readers r JOIN payments p ON p.reader_id = r.id
 WHERE r.external_id = :reader AND p.kind = 'donation' AND p.paid_at >= :donations_since
UNION ALL
SELECT 'pay', p.stripe_charge_id, p.kind, p.dispute_status, p.paid_at, NULL, NULL, NULL, NULL, NULL,
       p.amount_minor, p.refunded_minor, p.disputed_minor, p.stripe_subscription_id, NULL
  FROM readers r JOIN subscriptions s ON s.reader_id = r.id
  JOIN payments p ON p.stripe_subscription_id = s.stripe_subscription_id
 WHERE r.external_id = :reader AND s.kind = 'subscription' AND p.kind <> 'donation'
   AND s.status IN ('active', 'trialing', 'past_due', 'unpaid')
   AND p.paid_at >= s.current_period_start
UNION ALL
SELECT 'comp', c.note, NULL, NULL, c.until, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM readers r JOIN comps c ON c.reader_id = r.id
 WHERE r.external_id = :reader
UNION ALL
SELECT 'reader', NULL, NULL, NULL, r.registered_at, NULL, NULL, NULL, NULL, NULL, r.session_version, NULL,
       NULL, NULL, NULL
  FROM readers r
 WHERE r.external_id = :reader AND r.erased_at IS NULL
UNION ALL
SELECT 'dismiss', NULL, NULL, NULL, d.dismissed_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL
  FROM appeal_dismissals d
 WHERE d.reader = :reader
UNION ALL
SELECT 'meter', m.article, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, m.slot, NULL, NULL, NULL, NULL
  FROM meter_reads m
 WHERE m.reader = :reader AND m.period = :period
"""

# An anonymous browser: its dismissal and meter only. Columns: 0 src, 1 article, 2 dismissed_at, 3 slot.
_ANONYMOUS_SQL = """
SELECT 'dismiss' AS src, NULL AS ref, d.dismissed_at AS t1, NULL AS n1
  FROM appeal_dismissals d
 WHERE d.reader = :reader
UNION ALL
SELECT 'meter', m.article, NULL, m.slot
  FROM meter_reads m
 WHERE m.reader = :reader AND m.period = :period
"""

# Run on the driver's cursor (see DriverStatement): on the hot path Core's execution costs more
# than this statement. Columns: 0 src, 1 ref, 2 kind, 3 status, 4-8 t1..t5, 9 flag, 10-12 n1..n3, 13 ref2,
# 14 t6 (added last, so the others keep their places).
STATE_QUERY = DriverStatement(
    _STATE_SQL, datetime_params=("donations_since",), datetime_columns=(4, 5, 6, 7, 8, 14)
)
ANONYMOUS_QUERY = DriverStatement(_ANONYMOUS_SQL, datetime_columns=(2,))

# The ask budget ([appeal] max_asks > 0): the same statements with one more branch, the subject's
# asks since ``asks_since`` (an index range on appeal_asks (subject, asked_at); COUNT always
# answers one row). Still one round trip; without a budget the branch is not even sent.
_ASKS_BRANCH = """
UNION ALL
SELECT 'asks', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, COUNT(*), NULL, NULL, NULL, NULL
  FROM appeal_asks a
 WHERE a.subject = :reader AND a.asked_at >= :asks_since
"""
_ANONYMOUS_ASKS_BRANCH = """
UNION ALL
SELECT 'asks', NULL, NULL, COUNT(*)
  FROM appeal_asks a
 WHERE a.subject = :reader AND a.asked_at >= :asks_since
"""
STATE_ASKS_QUERY = DriverStatement(
    _STATE_SQL + _ASKS_BRANCH,
    datetime_params=("donations_since", "asks_since"),
    datetime_columns=(4, 5, 6, 7, 8, 14),
)
ANONYMOUS_ASKS_QUERY = DriverStatement(
    _ANONYMOUS_SQL + _ANONYMOUS_ASKS_BRANCH, datetime_params=("asks_since",), datetime_columns=(2,)
)


def _subscription(row: Sequence[Any]) -> SubscriptionFact:
    _, ref, kind, status, t1, t2, t3, t4, t5, flag, _n1, _n2, _n3, ref2, t6 = row
    return SubscriptionFact(
        stripe_subscription_id=ref,
        kind=kind,
        status=status,
        current_period_start=t1,
        current_period_end=t2,
        trial_end=t3,
        payment_failed_at=t4,
        ended_at=t5,
        cancel_at_period_end=bool(flag),
        pause_collection_behavior=ref2,
        pause_collection_resumes_at=t6,
    )


def _payment(row: Sequence[Any]) -> PaymentFact:
    _, ref, kind, status, t1, _t2, _t3, _t4, _t5, _flag, n1, n2, n3, ref2, _t6 = row
    return PaymentFact(
        stripe_charge_id=ref,
        kind=kind,
        dispute_status=status,
        paid_at=t1,
        amount_minor=n1 or 0,
        refunded_minor=n2 or 0,
        disputed_minor=n3 or 0,
        stripe_subscription_id=ref2,
    )


def load_state(
    conn: Session | Connection,
    reader: str,
    article: str | None,
    now: dt.datetime,
    settings: AccessSettings,
    period: str,
    asks_since: dt.datetime | None = None,
) -> ReaderState:
    """The reader's state for the rules, from one query (``period`` is the current meter period;
    ``asks_since``: also count the reader's asks since then, for the ask budget)."""
    # Donations older than both windows cannot grant access nor pause the appeal.
    days = max(settings.donation_access_days, settings.appeal_pause_days)
    params = {"reader": reader, "period": period, "donations_since": now - dt.timedelta(days=days)}
    statement = STATE_QUERY
    if asks_since is not None:
        params["asks_since"] = asks_since
        statement = STATE_ASKS_QUERY
    subs: list[SubscriptionFact] = []
    payments: list[PaymentFact] = []
    articles: set[str] = set()
    found: dict[str, Any] = {}
    slot = 0
    rows, _ = statement.execute(conn, params)
    for row in rows:
        src = row[0]
        if src == "sub":
            subs.append(_subscription(row))
        elif src == "pay":
            payments.append(_payment(row))
        elif src == "comp":
            found["comp"] = CompFact(until=row[4], note=row[1])
        elif src == "reader":
            found["registered"] = row[4] is not None
            found["session_version"] = row[10] or 0
        elif src == "dismiss":
            found["dismissed_at"] = row[4]
        elif src == "asks":
            found["asks"] = row[10] or 0
        else:
            articles.add(row[1])
            slot = max(slot, row[10] or 0)
    return ReaderState(
        reader=reader,
        article=article,
        subscriptions=tuple(subs),
        payments=tuple(payments),
        meter_articles=frozenset(articles),
        meter_slot=slot,
        **found,
    )


def load_anonymous_state(
    conn: Session | Connection,
    browser_id: str,
    article: str | None,
    period: str,
    asks_since: dt.datetime | None = None,
) -> ReaderState:
    """An anonymous browser's state: its meter and dismissal under ``anonymous_key(browser_id)``
    (and its asks since ``asks_since``, for the ask budget).

    No entitlement is even looked up, so no id a browser sends can reach a reader's rows.
    """
    key = anonymous_key(browser_id)
    dismissed_at: dt.datetime | None = None
    articles: set[str] = set()
    slot = 0
    asks = 0
    params: dict[str, Any] = {"reader": key, "period": period}
    statement = ANONYMOUS_QUERY
    if asks_since is not None:
        params["asks_since"] = asks_since
        statement = ANONYMOUS_ASKS_QUERY
    rows, _ = statement.execute(conn, params)
    for src, ref, dismissed, n1 in rows:
        if src == "dismiss":
            dismissed_at = dismissed
        elif src == "asks":
            asks = n1 or 0
        else:
            articles.add(ref)
            slot = max(slot, n1 or 0)
    return ReaderState(
        reader=key,
        article=article,
        dismissed_at=dismissed_at,
        meter_articles=frozenset(articles),
        meter_slot=slot,
        anonymous=True,
        asks=asks,
    )
