"""POST /v1/access with a level, the gate token it carries when denied, and registration by the site."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall import clock, signing
from paywall.access.service import evaluate, evaluate_anonymous
from paywall.access.tokens import issue_access_token
from paywall.config import Settings
from paywall.db import Database
from paywall.models import MeterRead, Reader
from tests.support import access_rows as f


def ask(client: FlaskClient, key: dict[str, str], reader: str, article: str, **extra: Any) -> dict[str, Any]:
    resp = client.post("/v1/access", json={"reader": reader, "article": article, **extra}, headers=key)
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def test_the_default_level_is_metered_and_an_allowed_answer_has_no_token(
    client: FlaskClient, site_key: dict[str, str]
) -> None:
    body = ask(client, site_key, "cookie-1", "a1")
    assert (body["level"], body["reason"], body["register"]) == ("metered", "metered", True)
    assert "token" not in body and "token_expires_at" not in body


def test_a_free_article_is_allowed_and_spends_nothing(
    client: FlaskClient, site_key: dict[str, str], db: Database
) -> None:
    body = ask(client, site_key, "cookie-1", "a1", level="free", explain=True)
    assert (body["allowed"], body["reason"], body["meter"], body["until"]) == (True, "free", None, None)
    assert body["trace"][0] == {
        "rule": "level",
        "applies": True,
        "why": "free: every reader may read it; the meter is not used",
    }
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0


def test_a_denied_answer_carries_a_token_for_the_gate(
    client: FlaskClient, site_key: dict[str, str], settings: Settings
) -> None:
    body = ask(client, site_key, "cookie-1", "long-read", level="supporters")
    assert (body["allowed"], body["reason"], body["register"]) == (False, "supporters_only", True)
    claims = signing.verify(settings, body["token"], purpose="access")
    assert claims["sub"] == "cookie-1" and claims["access"] is False and claims["reason"] == "supporters_only"
    assert claims["lvl"] == "supporters" and claims["reg"] is True and claims["art"] == "long-read"
    assert "anon" not in claims
    expires = dt.datetime.fromisoformat(body["token_expires_at"].replace("Z", "+00:00"))
    assert clock.now() < expires <= clock.now() + dt.timedelta(seconds=901)


def test_the_meter_running_out_carries_a_token_too(
    client: FlaskClient, site_key: dict[str, str], settings: Settings
) -> None:
    answers = [ask(client, site_key, "cookie-2", a) for a in ("a", "b", "c", "d")]
    assert [("token" in b) for b in answers] == [False, False, False, True]
    claims = signing.verify(settings, answers[-1]["token"], purpose="access")
    assert claims["reason"] == "meter_exhausted" and claims["meter"]["used"] == 3


def test_the_site_registers_its_reader_with_put(
    client: FlaskClient, site_key: dict[str, str], db: Database
) -> None:
    wall = ask(client, site_key, "member-1", "members-only", level="registered")
    assert (wall["allowed"], wall["reason"], wall["register"]) == (False, "registration_required", True)
    put = client.put("/v1/readers/member-1", json={"name": "Ana"}, headers=site_key)
    assert put.status_code == 201 and put.get_json()["registered"] is True
    with db.transaction() as s:
        first = s.scalar(select(Reader.registered_at).where(Reader.external_id == "member-1"))
    assert first is not None
    # Putting again keeps the first registration time.
    assert client.put("/v1/readers/member-1", json={"name": "Ana B"}, headers=site_key).status_code == 200
    with db.transaction() as s:
        assert s.scalar(select(Reader.registered_at).where(Reader.external_id == "member-1")) == first
    body = ask(client, site_key, "member-1", "members-only", level="registered")
    assert (body["allowed"], body["reason"], body["register"]) == (True, "metered", False)
    assert body["meter"]["limit"] == 5
    assert client.get("/v1/readers/member-1", headers=site_key).get_json()["registered"] is True


def test_an_erased_reader_is_no_longer_registered(
    client: FlaskClient, site_key: dict[str, str], admin_key: dict[str, str]
) -> None:
    assert (
        client.put("/v1/readers/gone", json={"email": "g@example.org"}, headers=site_key).status_code == 201
    )
    assert client.delete("/v1/readers/gone", headers=admin_key).status_code == 200
    body = ask(client, site_key, "gone", "members-only", level="registered")
    assert body["reason"] == "registration_required"


def test_an_unknown_level_is_a_422_naming_level(client: FlaskClient, site_key: dict[str, str]) -> None:
    resp = client.post(
        "/v1/access", json={"reader": "r", "article": "a", "level": "premium"}, headers=site_key
    )
    assert resp.status_code == 422 and "level" in resp.get_json()["errors"]


def test_the_registered_state_comes_from_the_one_query(db: Database, settings: Settings) -> None:
    now = clock.now()
    with db.transaction() as s:
        f.reader(s, "plain")
        f.reader(s, "signed-up").registered_at = now
    with db.engine.connect() as conn:
        plain = evaluate(conn, settings, "plain", "a", now, record=False, level="registered")
        signed_up = evaluate(conn, settings, "signed-up", "a", now, record=False, level="registered")
    assert plain.reason == "registration_required" and signed_up.reason == "metered"


def test_an_anonymous_evaluation_never_reads_a_readers_rows(db: Database, settings: Settings) -> None:
    now = clock.now()
    with db.transaction() as s:
        row = f.reader(s, "same-id-as-a-browser")
        row.registered_at = now
        f.subscription(s, row, current_period_end=now + dt.timedelta(days=3))
    with db.engine.connect() as conn:
        decision = evaluate_anonymous(conn, settings, "same-id-as-a-browser", "a", now, level="supporters")
        metered = evaluate_anonymous(conn, settings, "same-id-as-a-browser", "a", now)
        conn.commit()
    assert (decision.allowed, decision.reason, decision.register) == (False, "supporters_only", True)
    assert metered.reason == "metered" and metered.meter is not None and metered.meter.limit == 3


def test_issue_access_token_takes_a_level(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        token, _ = issue_access_token(s, settings, "cookie-9", level="supporters")
    claims = signing.verify(settings, token, purpose="access")
    assert (claims["lvl"], claims["reason"], claims["access"]) == ("supporters", "supporters_only", False)
    assert "art" not in claims and "anon" not in claims
