"""Hostile input and operational security: metacharacters in ids, key rotation, HTML headers."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from paywall.config import Settings
from paywall.db import Database
from paywall.models import Reader

NASTY_IDS = [
    "'; DROP TABLE readers; --",
    "1 OR 1=1",
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "reader\\with\\backslashes",
    '"><script>alert(1)</script>',
    "ünïcödé-読者-🙂",
    "$(rm -rf /)",
    "{{7*7}}",
]


@pytest.mark.parametrize("reader", NASTY_IDS)
def test_metacharacters_in_reader_ids_are_just_data(
    client: FlaskClient, site_key: dict[str, str], db: Database, reader: str
) -> None:
    path = "/v1/readers/" + quote(reader, safe="")
    resp = client.put(path, json={"name": "N"}, headers=site_key)
    if "/" in reader or reader in ("..",):
        # Werkzeug resolves dot segments and decoded slashes before routing: never a 5xx.
        assert resp.status_code < 500
        return
    assert resp.status_code == 201, resp.get_json()
    assert client.get(path, headers=site_key).get_json()["reader"] == reader
    with db.transaction(readonly=True) as session:
        assert session.query(Reader).filter_by(external_id=reader).count() == 1
        assert session.query(Reader).count() == 1  # nothing else touched, nothing dropped


def test_api_keys_rotate_without_downtime(
    client: FlaskClient,
    make_key: Callable[[str], dict[str, str]],
    runner: CliRunner,
) -> None:
    from paywall.cli import main

    old = runner.invoke(main, ["keys", "create", "--role", "site", "--name", "site-2026"]).output.split()[-1]
    new = runner.invoke(main, ["keys", "create", "--role", "site", "--name", "site-2027"]).output.split()[-1]
    for key in (old, new):  # both work while the site switches over
        assert client.put(
            "/v1/readers/r", json={}, headers={"Authorization": f"Bearer {key}"}
        ).status_code in (
            200,
            201,
        )
    runner.invoke(main, ["keys", "revoke", "site-2026"])
    client.application.extensions["paywall.keycache"].clear()
    assert client.get("/v1/readers/r", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/v1/readers/r", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_key_secret_is_checked_not_just_its_id(client: FlaskClient, site_key: dict[str, str]) -> None:
    key = site_key["Authorization"].removeprefix("Bearer ")
    prefix, key_id, secret = key.split("_")
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    assert client.get("/v1/readers/x", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_every_html_page_has_security_headers(client: FlaskClient) -> None:
    """Every GET route that answers HTML without parameters carries CSP, frame-ancestors, nosniff."""
    seen = 0
    for rule in client.application.url_map.iter_rules():
        if "GET" not in (rule.methods or set()) or rule.arguments:
            continue
        resp = client.get(rule.rule)
        if resp.mimetype != "text/html":
            continue
        seen += 1
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors" in csp, rule.rule
        assert "default-src" in csp, rule.rule
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", rule.rule
    assert seen >= 1


def test_failed_api_keys_are_throttled_per_address(
    make_settings: Callable[..., Settings],
    db: Database,
    make_key: Callable[[str], dict[str, str]],
) -> None:
    """Issue 13, point 11: wrong keys on the API are limited per client address; no key is a 401."""
    from paywall.app import create_app

    app = create_app(make_settings(ratelimit={"auth_failures_per_address": "3/minute"}), db=db)
    app.config["TESTING"] = True
    client = app.test_client()
    site = make_key("site")
    forged = {"Authorization": "Bearer pw_0000000000000000_forged"}
    for _ in range(20):  # no key at all: nothing guessed, nothing counted
        assert client.get("/v1/readers/r").status_code == 401
    assert client.get("/v1/readers/r", headers=site).status_code == 404
    for headers in (forged, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eDp5"}):
        assert client.get("/v1/readers/r", headers=headers).status_code == 401
    resp = client.get("/v1/readers/r", headers=site)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert resp.mimetype == "application/problem+json"
    assert client.get("/v1/readers/r").status_code == 401  # still a plain 401 without a key
    other = client.get("/v1/readers/r", headers=site, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert other.status_code == 404
