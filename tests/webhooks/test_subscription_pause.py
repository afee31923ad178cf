"""Paused subscriptions (issue 13, point 4): Stripe's pause_collection and the ``paused`` status.

The events are monthly_subscription_checkout's, plus ``customer.subscription.updated`` events derived
from its last subscription state with ``pause_collection`` set (as the customer portal does: the status stays
``active``) or cleared again, with ``previous_attributes``, signed and delivered like the others.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock
from paywall.db import Database
from paywall.models import Subscription
from tests.support.stripe_events import deliver_all, load_scenario

READER = "member_8731"
# monthly_subscription_checkout: paid 2026-09-01 14:00:40 UTC for the period up to 2026-10-01 14:00:40 UTC.
PAUSED_AT = dt.datetime(2026, 9, 10, 9, 0, tzinfo=dt.UTC)
DURING = dt.datetime(2026, 9, 15, 12, 0, tzinfo=dt.UTC)


def _ts(value: dt.datetime) -> int:
    return int(value.timestamp())


def subscription_updated(
    events: list[dict[str, Any]], created: dt.datetime, pause: dict[str, Any] | None, n: int = 1
) -> dict[str, Any]:
    """A ``customer.subscription.updated`` from the last subscription state in ``events`` with
    ``pause_collection`` set to ``pause`` (None: resumed), naming the old value as Stripe does."""
    last = [e for e in events if e["data"]["object"].get("object") == "subscription"][-1]
    event = copy.deepcopy(last)
    event["id"] = f"evt_1Pause{n:03d}Qz8wLm3xTn"
    event["type"] = "customer.subscription.updated"
    event["created"] = _ts(created)
    # A portal (API) call, so a req_ id, as on cancel_at_period_end_then_deleted's update.
    event["request"] = {"id": f"req_Pause{n:03d}Qz8wLm", "idempotency_key": None}
    obj = event["data"]["object"]
    event["data"]["previous_attributes"] = {"pause_collection": obj.get("pause_collection")}
    obj["pause_collection"] = pause
    return event


def paused_scenario(behavior: str = "mark_uncollectible", resumes_at: dt.datetime | None = None) -> list[Any]:
    events = load_scenario("monthly_subscription_checkout")
    pause = {"behavior": behavior, "resumes_at": _ts(resumes_at) if resumes_at else None}
    return [*events, subscription_updated(events, PAUSED_AT, pause)]


def access(client: FlaskClient, key: dict[str, str]) -> dict[str, Any]:
    resp = client.post("/v1/access", json={"reader": READER, "article": "a1", "explain": True}, headers=key)
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def test_paused_subscriptions_do_not_keep_access(
    client: FlaskClient, db: Database, site_key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "now", lambda: DURING)
    events = load_scenario("monthly_subscription_checkout")
    deliver_all(client, events)
    assert access(client, site_key)["reason"] == "subscription"

    paused = paused_scenario()
    deliver_all(client, paused[len(events) :])
    with db.transaction(readonly=True) as s:
        row = s.scalar(select(Subscription))
        assert row is not None and row.status == "active", "Stripe leaves the status active"
        assert (row.pause_collection_behavior, row.pause_collection_resumes_at) == (
            "mark_uncollectible",
            None,
        )
        assert row.paused_at == PAUSED_AT
    body = access(client, site_key)
    assert (body["allowed"], body["reason"], body["appeal"]) == (True, "metered", True)
    (step,) = [t for t in body["trace"] if t["rule"] == "subscription"]
    assert step["applies"] is False and "collection is paused (mark_uncollectible)" in step["why"]
    assert "no access while paused" in step["why"]

    # Resumed from the portal: pause_collection back to null, access back.
    resumed = subscription_updated(paused, PAUSED_AT + dt.timedelta(days=3), None, n=2)
    deliver_all(client, [resumed])
    with db.transaction(readonly=True) as s:
        row = s.scalar(select(Subscription))
        assert row is not None and (row.pause_collection_behavior, row.paused_at) == (None, None)
    assert access(client, site_key)["reason"] == "subscription"


def test_a_pause_with_resumes_at_in_the_past_is_over(
    client: FlaskClient, site_key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    resumes = DURING + dt.timedelta(days=1)
    deliver_all(client, paused_scenario("void", resumes_at=resumes))
    monkeypatch.setattr(clock, "now", lambda: DURING)
    before = access(client, site_key)
    assert before["reason"] == "metered"
    assert any(f"until {clock.isoformat(resumes)}" in t["why"] for t in before["trace"])
    # Stripe has not yet sent the update clearing pause_collection: from resumes_at on, no longer paused.
    monkeypatch.setattr(clock, "now", lambda: resumes)
    assert access(client, site_key)["reason"] == "subscription"


def test_paused_subscription_shows_as_paused_in_the_reader_view(
    client: FlaskClient, site_key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    resumes = DURING + dt.timedelta(days=1)
    deliver_all(client, paused_scenario("keep_as_draft", resumes_at=resumes))
    monkeypatch.setattr(clock, "now", lambda: DURING)
    sub = client.get(f"/v1/readers/{READER}", headers=site_key).get_json()["supporter"]["subscription"]
    assert sub["status"] == "active" and sub["paused"] is True
    assert sub["pause_collection"] == {"behavior": "keep_as_draft", "resumes_at": clock.isoformat(resumes)}
    assert sub["paused_at"] == clock.isoformat(PAUSED_AT)
    # Past resumes_at the pause is over (Stripe's update clearing it may still be on its way).
    monkeypatch.setattr(clock, "now", lambda: resumes)
    sub = client.get(f"/v1/readers/{READER}", headers=site_key).get_json()["supporter"]["subscription"]
    assert sub["paused"] is False and sub["pause_collection"]["behavior"] == "keep_as_draft"


def test_portal_pause_is_counted_apart_in_the_subscriptions_report(
    client: FlaskClient, finance_key: dict[str, str]
) -> None:
    deliver_all(client, paused_scenario())
    body = client.get(
        "/v1/reports/subscriptions?start=2026-08-01&end=2026-11-01&livemode=all", headers=finance_key
    ).get_json()
    months = {r["period"]: (r["active"], r["new"], r["paused"], r["mrr"]) for r in body["rows"]}
    # Paying from Sep 1st, paused from Sep 10th on: not active, out of MRR.
    assert months == {"2026-08": (0, 0, 0, 0), "2026-09": (0, 1, 1, 0), "2026-10": (0, 0, 1, 0)}
    (total,) = body["totals"]
    assert (total["active"], total["paused"], total["mrr"]) == (0, 1, 0)


@pytest.mark.parametrize("order", ["in order", "newest first"])
def test_paused_at_is_the_same_whatever_the_delivery_order(
    client: FlaskClient, db: Database, order: str
) -> None:
    paused = paused_scenario()
    # A week later the portal switches the same pause to void: still paused since PAUSED_AT.
    switched = subscription_updated(
        paused, PAUSED_AT + dt.timedelta(days=7), {"behavior": "void", "resumes_at": None}, n=2
    )
    switched["data"]["previous_attributes"] = {
        "pause_collection": paused[-1]["data"]["object"]["pause_collection"]
    }
    pause_events = [paused[-1], switched]
    deliver_all(client, paused[:-1] + (pause_events if order == "in order" else pause_events[::-1]))
    with db.transaction(readonly=True) as s:
        row = s.scalar(select(Subscription))
        assert row is not None and row.pause_collection_behavior == "void"
        assert row.paused_at == PAUSED_AT


def test_paused_at_stays_put_when_the_same_pause_is_fetched_again(db: Database) -> None:
    """A pause first seen by ``paywall stripe sync`` (no stored event shows it) keeps the start
    the first fetch saw; fetching it again later must not move it forward (closed months of the
    subscriptions report would change)."""
    from paywall.webhooks.sync.derived import settle
    from paywall.webhooks.sync.ordering import Source
    from paywall.webhooks.sync.subscriptions import upsert_subscription

    events = load_scenario("monthly_subscription_checkout")
    state = copy.deepcopy([e for e in events if e["data"]["object"].get("object") == "subscription"][-1])
    sub = state["data"]["object"]
    sub["pause_collection"] = {"behavior": "void", "resumes_at": None}
    first, second = PAUSED_AT, PAUSED_AT + dt.timedelta(days=20)
    for at in (first, second):
        with db.transaction() as session:
            upsert_subscription(session, sub, Source.fetch(at=at))
            settle(session)
    with db.transaction(readonly=True) as session:
        row = session.scalars(select(Subscription)).one()
        assert row.paused_at == first
