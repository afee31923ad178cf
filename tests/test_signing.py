"""Signed tokens: round trip, purpose, tampering, expiry, rotation, and the published keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import jwt
import pytest
from flask.testing import FlaskClient

from paywall import clock, signing
from paywall.config import Settings


def test_round_trip_and_purpose(settings: Settings) -> None:
    token, expires = signing.sign(settings, {"sub": "r1"}, purpose="access", ttl=dt.timedelta(minutes=15))
    claims = signing.verify(settings, token, purpose="access")
    assert claims["sub"] == "r1" and claims["pur"] == "access"
    assert expires - clock.now() <= dt.timedelta(minutes=15)
    with pytest.raises(signing.InvalidToken, match="purpose"):
        signing.verify(settings, token, purpose="unsubscribe")


def test_tampered_and_garbage_tokens(settings: Settings) -> None:
    token, _ = signing.sign(settings, {"sub": "r1"}, purpose="access", ttl=dt.timedelta(minutes=1))
    head, _body, sig = token.split(".")
    forged = jwt.utils.base64url_encode(b'{"sub":"r2","pur":"access","iat":1,"exp":9999999999}').decode()
    with pytest.raises(signing.InvalidToken):
        signing.verify(settings, f"{head}.{forged}.{sig}", purpose="access")
    with pytest.raises(signing.InvalidToken):
        signing.verify(settings, "not-a-token", purpose="access")


def test_expired(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    past = clock.now() - dt.timedelta(hours=2)
    monkeypatch.setattr(clock, "now", lambda: past)
    token, _ = signing.sign(settings, {"sub": "r1"}, purpose="access", ttl=dt.timedelta(minutes=1))
    monkeypatch.undo()
    with pytest.raises(signing.InvalidToken, match="expired"):
        signing.verify(settings, token, purpose="access")


def test_rotation_keeps_old_tokens_valid(make_settings: Callable[..., Settings]) -> None:
    old_pem, new_pem = signing.generate_pem(), signing.generate_pem()
    old = make_settings({"PAYWALL_SIGNING_KEY": old_pem})
    token, _ = signing.sign(old, {"sub": "r1"}, purpose="access", ttl=dt.timedelta(minutes=5))
    rotated = make_settings({"PAYWALL_SIGNING_KEY": new_pem + old_pem})
    assert signing.verify(rotated, token, purpose="access")["sub"] == "r1"
    new_token, _ = signing.sign(rotated, {"sub": "r2"}, purpose="access", ttl=dt.timedelta(minutes=5))
    assert jwt.get_unverified_header(new_token)["kid"] == signing.keyring(rotated)[0].kid
    assert len(signing.jwks(rotated)["keys"]) == 2
    retired = make_settings({"PAYWALL_SIGNING_KEY": new_pem})
    with pytest.raises(signing.InvalidToken, match="unknown signing key"):
        signing.verify(retired, token, purpose="access")


def test_jwks_endpoint_verifies_with_pyjwt(client: FlaskClient, settings: Settings) -> None:
    """What a site does offline: fetch the JWK set once, verify tokens with a stock JWT library."""
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    token, _ = signing.sign(settings, {"sub": "r9"}, purpose="access", ttl=dt.timedelta(minutes=5))
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in keys if k["kid"] == kid)
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["EdDSA"])["sub"] == "r9"
