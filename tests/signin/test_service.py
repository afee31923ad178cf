"""The sign-in service: codes and links, who the person is, the anonymous meter merge, sign-out."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import select

from paywall import clock, signing
from paywall.access.anonymous import anonymous_key
from paywall.access.rules import meter_period
from paywall.access.settings import access_settings
from paywall.config import Settings
from paywall.db import Database
from paywall.errors import ApiError
from paywall.models import (
    AppealDismissal,
    CheckoutSession,
    MeterRead,
    OutboxMessage,
    Payment,
    Reader,
    SigninCode,
    StripeCustomer,
)
from paywall.signin import codes, service
from paywall.signin.sealing import unseal
from paywall.signin.tokens import reader_from_token

BROWSER = "b" * 22
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def ask(db: Database, settings: Settings, email: str, **kwargs: Any) -> dict[str, Any]:
    """Request a code; returns the unsealed secret of the queued mail (code, link)."""
    with db.transaction() as s:
        service.request_signin(s, settings, email, now=kwargs.pop("now", NOW), **kwargs)
    with db.transaction() as s:
        msg = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
        assert msg is not None and msg.to_email is not None
        secret = unseal(settings, msg.kind, msg.to_email, msg.data["sealed"])
    assert secret is not None
    return secret


def exchange(db: Database, settings: Settings, **kwargs: Any) -> service.SignedIn:
    """One exchange in its own transaction; a refusal still commits the failed attempt (as the view)."""
    refused: ApiError | None = None
    with db.transaction() as s:
        try:
            return service.exchange(s, settings, now=kwargs.pop("now", NOW), **kwargs)
        except ApiError as exc:
            refused = exc
    raise refused


def token_of(link: str) -> str:
    return link.rsplit("paywall_signin=", 1)[1]


# -- the mail -------------------------------------------------------------------------------


def test_the_code_waits_sealed_and_the_link_follows_the_contract(db: Database, make_settings: Any) -> None:
    settings = make_settings(env={"PAYWALL_ALLOWED_ORIGINS": "https://news.example.org"})
    secret = ask(db, settings, " Ana@Example.org ", return_url="https://news.example.org/a/1#top")
    assert secret["code"].isdigit() and len(secret["code"]) == 6
    assert secret["link"].startswith("https://news.example.org/a/1#paywall_signin=")
    with db.transaction() as s:
        msg = s.scalars(select(OutboxMessage)).one()
        assert msg.kind == "signin_code" and msg.to_email == "ana@example.org" and msg.reader_id is None
        assert secret["code"] not in str(msg.data) and "paywall_signin" not in str(msg.data)
    # Sealed for this recipient and kind only.
    assert unseal(settings, "signin_code", "bob@example.org", msg.data["sealed"]) is None
    assert unseal(settings, "delete_code", "ana@example.org", msg.data["sealed"]) is None


def test_link_shapes(make_settings: Any) -> None:
    plain = make_settings()
    assert service.signin_link(plain, "T", None) == "https://paywall.example.org/signin#paywall_signin=T"
    assert service.signin_link(plain, "T", "https://paywall.example.org/x?a=1#f") == (
        "https://paywall.example.org/x?a=1#paywall_signin=T"
    )
    backend = make_settings(signin={"return_url": "https://news.example.org/signin"})
    assert service.signin_link(backend, "T", "https://news.example.org/a/1") == (
        "https://news.example.org/signin?paywall_signin=T&return_to=https%3A%2F%2Fnews.example.org%2Fa%2F1"
    )
    assert service.signin_link(backend, "T", None) == "https://news.example.org/signin?paywall_signin=T"


def test_a_foreign_return_url_is_dropped(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org", return_url="https://evil.example.com/")
    assert secret["link"].startswith("https://paywall.example.org/signin#paywall_signin=")


def test_delete_codes_have_their_own_kind_and_no_link(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org", purpose="delete")
    assert set(secret) == {"code"}
    with db.transaction() as s:
        assert s.scalars(select(OutboxMessage.kind)).one() == "delete_code"
    # A delete code never signs anyone in.
    with pytest.raises(ApiError) as refused:
        exchange(db, settings, email="ana@example.org", code=secret["code"])
    assert "code" in refused.value.errors


def test_known_and_unknown_addresses_get_the_same_work(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        s.add(Reader(external_id="ana", verified_email="ana@example.org"))
    ask(db, settings, "ana@example.org")
    ask(db, settings, "nobody@example.org")
    with db.transaction() as s:
        rows = s.execute(select(OutboxMessage.kind, OutboxMessage.reader_id, OutboxMessage.data)).all()
        assert [(k, r, sorted(d)) for k, r, d in rows] == [
            ("signin_code", None, ["expires_at", "minutes", "purpose", "sealed"])
        ] * 2
        assert s.scalar(select(Reader).where(Reader.external_id != "ana")) is None


# -- the exchange ---------------------------------------------------------------------------


def test_a_code_signs_in_once(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    signed = exchange(db, settings, email="ANA@example.org", code=secret["code"])
    assert signed.reader.startswith("rdr_")
    with db.transaction() as s:
        assert reader_from_token(s, settings, signed.reader_token) == signed.reader
        reader = s.scalars(select(Reader)).one()
        assert reader.verified_email == "ana@example.org" and reader.registered_at is not None
    claims = signing.verify(settings, signed.access_token, purpose="access")
    assert claims["sub"] == signed.reader
    assert signed.expires_at > NOW
    with pytest.raises(ApiError) as again:
        exchange(db, settings, email="ana@example.org", code=secret["code"])
    assert again.value.status == 400 and again.value.extra["reason"] == "used"
    assert list(again.value.errors) == ["code"]


def test_the_link_token_signs_in_once_and_the_code_dies_with_it(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    signed = exchange(db, settings, token=token_of(secret["link"]))
    assert signed.reader.startswith("rdr_")
    with pytest.raises(ApiError) as again:
        exchange(db, settings, token=token_of(secret["link"]))
    assert list(again.value.errors) == ["token"]
    with pytest.raises(ApiError):
        exchange(db, settings, email="ana@example.org", code=secret["code"])


def test_an_expired_code_is_refused(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    late = NOW + dt.timedelta(minutes=15)
    with pytest.raises(ApiError) as refused:
        exchange(db, settings, email="ana@example.org", code=secret["code"], now=late)
    assert refused.value.extra["reason"] == "expired"
    with pytest.raises(ApiError) as link:
        exchange(db, settings, token=token_of(secret["link"]), now=late)
    assert link.value.extra["reason"] == "expired"


def test_five_wrong_codes_lock_the_address_until_a_new_code(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    wrong = f"{(int(secret['code']) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(ApiError) as refused:
            exchange(db, settings, email="ana@example.org", code=wrong)
        assert refused.value.extra["reason"] == "wrong"
    with pytest.raises(ApiError) as locked:
        exchange(db, settings, email="ana@example.org", code=secret["code"])
    assert locked.value.extra["reason"] == "locked"
    fresh = ask(db, settings, "ana@example.org")
    assert exchange(db, settings, email="ana@example.org", code=fresh["code"]).reader


def test_a_return_token_signs_its_reader_in(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        reader = Reader(external_id="site-reader")
        s.add(reader)
        s.flush()
        token = codes.issue_return_token(s, settings, reader, now=NOW)
    assert exchange(db, settings, token=token).reader == "site-reader"


def test_neither_code_nor_token_names_code(db: Database, settings: Settings) -> None:
    with pytest.raises(ApiError) as refused:
        exchange(db, settings, email="ana@example.org")
    assert list(refused.value.errors) == ["code"]
    with pytest.raises(ApiError) as bad:
        exchange(db, settings, token="x", anonymous_reader="not valid!")
    assert list(bad.value.errors) == ["anonymous_reader"]


# -- who the person is ----------------------------------------------------------------------


def _sign_in_as(db: Database, settings: Settings, email: str) -> str:
    return exchange(db, settings, email=email, code=ask(db, settings, email)["code"]).reader


def test_the_reader_who_verified_before(db: Database, settings: Settings) -> None:
    first = _sign_in_as(db, settings, "ana@example.org")
    assert _sign_in_as(db, settings, "Ana@Example.org") == first


def test_the_earliest_linked_reader_case_insensitive(db: Database, settings: Settings) -> None:
    day = dt.timedelta(days=1)
    with db.transaction() as s:
        late, early, sessioned = (
            Reader(external_id="late"),
            Reader(external_id="early"),
            Reader(external_id="cs"),
        )
        s.add_all([late, early, sessioned])
        s.flush()
        s.add(
            StripeCustomer(
                stripe_customer_id="cus_1",
                reader_id=late.id,
                email="ANA@example.org",
                stripe_created=NOW - day,
            )
        )
        s.add(
            Payment(
                stripe_charge_id="ch_1",
                reader_id=early.id,
                kind="donation",
                amount_minor=500,
                currency="eur",
                email="Ana@Example.ORG",
                paid_at=NOW - 3 * day,
            )
        )
        s.add(
            CheckoutSession(
                stripe_checkout_session_id="cs_1",
                reader_id=sessioned.id,
                email="ana@example.org",
                completed_at=NOW - 2 * day,
            )
        )
    assert _sign_in_as(db, settings, "ana@example.org") == "early"


def test_a_checkout_session_links_too(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        reader = Reader(external_id="cs-reader")
        s.add(reader)
        s.flush()
        s.add(
            CheckoutSession(
                stripe_checkout_session_id="cs_2",
                reader_id=reader.id,
                email="Bo@example.org",
                completed_at=NOW,
            )
        )
    assert _sign_in_as(db, settings, "bo@example.org") == "cs-reader"


def test_a_guest_donor_becomes_a_new_reader_with_their_gifts(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        s.add(
            Payment(
                stripe_charge_id="ch_g",
                kind="donation",
                amount_minor=500,
                currency="eur",
                email="Guest@example.org",
                paid_at=NOW,
            )
        )
    reader = _sign_in_as(db, settings, "guest@example.org")
    with db.transaction() as s:
        row = s.scalars(select(Reader).where(Reader.external_id == reader)).one()
        assert s.scalars(select(Payment.reader_id)).one() == row.id


# -- the anonymous meter --------------------------------------------------------------------


def _period(settings: Settings) -> str:
    return meter_period(NOW, access_settings(settings))[0]


def _reads(db: Database, reader: str, period: str) -> list[tuple[str, int | None]]:
    with db.transaction() as s:
        rows = s.execute(
            select(MeterRead.article, MeterRead.slot)
            .where(MeterRead.reader == reader, MeterRead.period == period)
            .order_by(MeterRead.slot)
        ).all()
    return [(a, slot) for a, slot in rows]


def test_the_anonymous_meter_and_dismissal_move_each_article_once(db: Database, settings: Settings) -> None:
    period = _period(settings)
    anon = anonymous_key(BROWSER)
    with db.transaction() as s:
        reader = Reader(external_id="ana", verified_email="ana@example.org")
        s.add(reader)
        s.add_all(
            [
                MeterRead(reader="ana", period=period, article="a1", slot=1, read_at=NOW),
                MeterRead(reader="ana", period=period, article="a2", slot=2, read_at=NOW),
                MeterRead(reader=anon, period=period, article="a2", slot=1, read_at=NOW),
                MeterRead(reader=anon, period=period, article="a3", slot=2, read_at=NOW),
                MeterRead(reader=anon, period="2020-01", article="old", slot=1, read_at=NOW),
                AppealDismissal(reader=anon, dismissed_at=NOW - dt.timedelta(hours=1)),
            ]
        )
    exchange(
        db,
        settings,
        email="ana@example.org",
        code=ask(db, settings, "ana@example.org")["code"],
        anonymous_reader=BROWSER,
    )
    assert _reads(db, "ana", period) == [("a1", 1), ("a2", 2), ("a3", 3)]
    assert _reads(db, anon, period) == []
    with db.transaction() as s:
        assert s.scalar(select(AppealDismissal.reader)) == "ana"


def test_ten_concurrent_exchanges_merge_one_anonymous_meter(db: Database, settings: Settings) -> None:
    period = _period(settings)
    anon = anonymous_key(BROWSER)
    with db.transaction() as s:
        reader = Reader(external_id="ana")
        s.add(reader)
        s.add(MeterRead(reader="ana", period=period, article="a0", slot=1, read_at=NOW))
        s.add_all(
            MeterRead(reader=anon, period=period, article=f"a{i}", slot=i + 1, read_at=NOW) for i in range(4)
        )
        s.flush()
        tokens = [codes.issue_return_token(s, settings, reader, now=NOW) for _ in range(10)]
    start = threading.Barrier(10)
    outcomes: list[object] = []

    def run(token: str) -> None:
        start.wait()
        try:
            outcomes.append(exchange(db, settings, token=token, anonymous_reader=BROWSER).reader)
        except Exception as exc:  # reported below
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == ["ana"] * 10
    reads = _reads(db, "ana", period)
    assert sorted(a for a, _ in reads) == ["a0", "a1", "a2", "a3"]
    assert [slot for _, slot in reads] == [1, 2, 3, 4]
    assert _reads(db, anon, period) == []


# -- sign-out -------------------------------------------------------------------------------


def test_sign_out_everywhere_ends_every_reader_token(db: Database, settings: Settings) -> None:
    one = _sign_in_as(db, settings, "ana@example.org")
    first = exchange(db, settings, email="ana@example.org", code=ask(db, settings, "ana@example.org")["code"])
    second = exchange(
        db, settings, email="ana@example.org", code=ask(db, settings, "ana@example.org")["code"]
    )
    assert first.reader == second.reader == one
    with db.transaction() as s:
        assert service.sign_out(s, settings, first.reader_token, everywhere=False) == "signed_out"
    with db.transaction() as s:
        assert reader_from_token(s, settings, first.reader_token) == one  # this device forgets it
        assert service.sign_out(s, settings, first.reader_token, everywhere=True) == "signed_out_everywhere"
    with db.transaction() as s:
        assert reader_from_token(s, settings, first.reader_token) is None
        assert reader_from_token(s, settings, second.reader_token) is None
        assert service.sign_out(s, settings, second.reader_token, everywhere=True) == "not_signed_in"
    third = _sign_in_as(db, settings, "ana@example.org")
    assert third == one


def test_codes_are_stored_hashed(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    with db.transaction() as s:
        row = s.scalars(select(SigninCode)).one()
        assert secret["code"] not in (row.code_hash, row.token_hash)
    assert clock.now()  # the real clock is untouched by these tests


def test_concurrent_wrong_codes_get_exactly_the_allowed_guesses(db: Database, settings: Settings) -> None:
    secret = ask(db, settings, "ana@example.org")
    wrong = f"{(int(secret['code']) + 1) % 1_000_000:06d}"
    start = threading.Barrier(12)
    reasons: list[str] = []

    def guess() -> None:
        start.wait()
        try:
            exchange(db, settings, email="ana@example.org", code=wrong)
        except ApiError as exc:
            reasons.append(str(exc.extra.get("reason")))

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(reasons) == ["locked"] * 7 + ["wrong"] * 5


def test_a_moved_read_that_loses_its_slot_takes_the_next(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An access check of the reader claims a slot between the merge's look and its insert."""
    from paywall.access import meter
    from paywall.signin import merge

    period = _period(settings)
    with db.transaction() as s:
        s.add(Reader(external_id="ana", verified_email="ana@example.org"))
        s.add(MeterRead(reader="ana", period=period, article="a0", slot=1, read_at=NOW))
        s.add(MeterRead(reader=anonymous_key(BROWSER), period=period, article="a1", slot=1, read_at=NOW))
    real, stale = meter.read_meter, [True]  # the function merge imports and calls

    def read_meter(conn: Any, reader: str, p: str) -> tuple[frozenset[str], int]:
        if stale:  # the first look misses the read at slot 1
            stale.pop()
            return frozenset(), 0
        return real(conn, reader, p)

    monkeypatch.setattr(merge, "read_meter", read_meter)
    exchange(
        db,
        settings,
        email="ana@example.org",
        code=ask(db, settings, "ana@example.org")["code"],
        anonymous_reader=BROWSER,
    )
    assert _reads(db, "ana", period) == [("a0", 1), ("a1", 2)]
