"""What a site runs to verify access tokens offline: the documented PyJWT code and the libsodium variant."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from paywall import clock, signing
from paywall.config import Settings
from paywall.db import Database
from tests.support import access_rows as f

ROOT = Path(__file__).resolve().parents[2]


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("verify_token", ROOT / "docs/examples/verify_token.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def issued(db: Database, client: FlaskClient, site_key: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """A real access token for a donor, and the JWKS as the site fetches it."""
    with db.transaction() as s:
        f.payment(s, f.reader(s, "don"), clock.now() - dt.timedelta(days=1))
    token = client.post("/v1/access/token", json={"reader": "don"}, headers=site_key).get_json()["token"]
    return token, client.get("/.well-known/jwks.json").get_json()


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = jwt.utils.base64url_decode(payload).replace(b'"don"', b'"eve"')
    return ".".join([header, jwt.utils.base64url_encode(claims).decode(), signature])


def test_libsodium_verifier_accepts_genuine_tokens_and_refuses_the_rest(
    issued: tuple[str, dict[str, Any]], settings: Settings
) -> None:
    token, jwks = issued
    verifier = _example().TokenVerifier(jwks)
    claims = verifier.verify(token)
    assert claims is not None
    assert (claims["sub"], claims["access"], claims["reason"]) == ("don", True, "donation")
    assert claims == jwt.decode(token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["EdDSA"])

    header, payload, signature = token.split(".")
    unsigned = jwt.utils.base64url_encode(b'{"alg":"none","kid":"%s"}' % jwks["keys"][0]["kid"].encode())
    expired, _ = signing.sign(settings, {"sub": "don"}, purpose="access", ttl=dt.timedelta(seconds=-60))
    other_purpose, _ = signing.sign(settings, {"sub": "don"}, purpose="widget", ttl=dt.timedelta(minutes=5))
    refused = [
        _tampered(token),
        f"{unsigned.decode()}.{payload}.",
        f"{header}.{payload}.{signature[:-4]}AAAA",
        expired,
        other_purpose,
        "not-a-token",
        "a.b.c",
        "",
        "....",
    ]
    for bad in refused:
        assert verifier.verify(bad) is None, bad
    # Another key set (a rotation that dropped this key) refuses it too.
    assert _example().TokenVerifier({"keys": []}).verify(token) is None
    # Expiry is the token's own, with 30 s of leeway for clock skew.
    exp = claims["exp"]
    assert verifier.verify(token, now=exp + 30) is not None
    assert verifier.verify(token, now=exp + 31) is None


def test_the_documented_python_example_runs_as_written(
    issued: tuple[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    client: FlaskClient,
    site_key: dict[str, str],
) -> None:
    """docs/access.md's snippet, run against the real service: an entitlement shows offline; any
    other token (forged, or none) asks POST /v1/access, so a metered reader still reads free."""
    token, jwks = issued
    doc = (ROOT / "docs" / "access.md").read_text()
    section = doc[doc.index("### Access tokens, verified offline by the site") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Python verification example is missing from docs/access.md"
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda self: jwks)  # no network in tests
    for n in range(3):  # "spent" has used this month's three free articles
        client.post("/v1/access", json={"reader": "spent", "article": f"old-{n}"}, headers=site_key)
    asked: list[dict[str, Any]] = []

    def ask_paywall(path: str, body: dict[str, Any]) -> Any:
        asked.append(body)
        return client.post(path, json=body, headers=site_key).get_json()

    cases = [
        (token, "don", True, 0),  # the donor's genuine token: shown without asking
        ("not-a-token", "new-reader", True, 1),  # no entitlement offline, but free articles left
        (_tampered(token), "spent", False, 1),  # a forged token falls back to the meter: used up
    ]
    for candidate, reader, expected, questions in cases:
        asked.clear()
        scope: dict[str, Any] = {
            "token": candidate,
            "reader": reader,
            "article": "a1",
            "ask_paywall": ask_paywall,
        }
        exec(code.group(1), scope)  # noqa: S102 - our own docs
        assert (scope["show_article"], len(asked)) == (expected, questions), reader
