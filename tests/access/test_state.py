"""The state is read afresh by every check: what another process commits is seen by the very next one.

Issue 16 weighed holding supporters' entitlements in memory per process (docs/benchmarks.md,
"An entitlement cache?") and kept reading them in the check's one statement. These tests pin
what any such change would have to keep: a refund or a lost dispute applied by the Stripe sync
in another process, or a comp revoked by staff there, is denied by the app's next check, on
connections the app has already used; and a grant ends at its own ``until`` with nothing written.
The writer is a second ``Database`` (its own pool and connections, as a worker or a CLI run has).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from paywall import clock
from paywall.access import comps
from paywall.config import Settings
from paywall.db import Database
from paywall.webhooks import applier, inbox
from tests.support.stripe_events import body_of, load_scenario, scenario_file

READER = "donor_41"
# one_time_donation_checkout pays the donation at 2026-09-05 18:31:36 UTC.
DONATED = dt.datetime(2026, 9, 5, 18, 31, 36, tzinfo=dt.UTC)


@pytest.fixture
def elsewhere(migrated: str) -> Iterator[Database]:
    """Another process's view of the same database: its own engine, pool and connections."""
    other = Database(migrated)
    try:
        yield other
    finally:
        other.dispose()


def pin(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: when)


def check(client: FlaskClient, key: dict[str, str], article: str = "a1") -> dict[str, Any]:
    resp = client.post("/v1/access", json={"reader": READER, "article": article}, headers=key)
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def apply(db: Database, settings: Settings, events: list[dict[str, Any]]) -> None:
    """The Stripe sync's own path for verified events, in ``db``'s process: recorded as the
    webhook records them, then applied as the applier does."""
    for event in events:
        assert inbox.accept(db, settings, body_of(event), event).outcome == "queued", event["id"]
    tally = applier.drain(db, settings)
    assert set(tally) == {"processed"}, tally


def donate(db: Database, settings: Settings) -> None:
    """one_time_donation_checkout, the guest's checkout session naming READER."""
    events = copy.deepcopy(load_scenario("one_time_donation_checkout"))
    events[-1]["data"]["object"]["client_reference_id"] = READER
    apply(db, settings, events)


@pytest.mark.parametrize("scenario", ["donation_refund", "dispute_lost"])
def test_a_refund_or_lost_dispute_applied_elsewhere_denies_the_next_check(
    client: FlaskClient,
    settings: Settings,
    site_key: dict[str, str],
    elsewhere: Database,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
) -> None:
    pin(monkeypatch, DONATED + dt.timedelta(days=1))
    donate(elsewhere, settings)
    # The app's connections have served this reader's grant several times over.
    for article in ("a1", "a2", "a3", "a4", "a5"):
        body = check(client, site_key, article)
        assert (body["allowed"], body["reason"]) == (True, "donation"), body

    apply(elsewhere, settings, scenario_file(scenario))

    body = check(client, site_key, "a6")
    assert body["reason"] != "donation", body
    assert (body["allowed"], body["reason"]) == (True, "metered")
    assert body["meter"]["used"] == 1


def test_a_comp_revoked_elsewhere_denies_the_next_check(
    client: FlaskClient,
    site_key: dict[str, str],
    admin_key: dict[str, str],
    elsewhere: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pin(monkeypatch, DONATED)
    assert (
        client.put(f"/v1/comps/{READER}", json={"until": "2026-12-31"}, headers=admin_key).status_code == 201
    )
    for article in ("a1", "a2", "a3", "a4"):
        assert check(client, site_key, article)["reason"] == "comp"

    with elsewhere.transaction() as session:
        assert comps.revoke_comp(session, READER) == "revoked"

    body = check(client, site_key, "a5")
    assert (body["allowed"], body["reason"]) == (True, "metered"), body


def test_a_comp_ends_at_its_until_with_nothing_written(
    client: FlaskClient, site_key: dict[str, str], elsewhere: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    until = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
    with elsewhere.transaction() as session:
        comps.grant_comp(session, READER, until=until, note=None, granted_by="staff")
    pin(monkeypatch, until - dt.timedelta(microseconds=1))
    for _ in range(3):
        body = check(client, site_key)
        assert (body["reason"], body["until"]) == ("comp", "2026-10-01T12:00:00Z"), body

    pin(monkeypatch, until)
    body = check(client, site_key)
    assert (body["allowed"], body["reason"], body["until"]) == (True, "metered", None), body
