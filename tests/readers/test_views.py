"""Readers API, roles, and the one error shape for bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from paywall.config import Settings
from paywall.db import Database

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def assert_problem(resp: TestResponse, status: int, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body: dict[str, Any] = resp.get_json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    if field:
        assert field in body["errors"], body
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def test_put_creates_then_updates(client: FlaskClient, site_key: dict[str, str]) -> None:
    resp = client.put("/v1/readers/r-1", json={"email": "ana@example.org", "name": "Ana"}, headers=site_key)
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["reader"] == "r-1"
    assert body["email"] == "ana@example.org"
    assert body["supporter"] == {"subscription": None, "subscriptions": [], "donations": [], "comp": None}

    resp = client.put("/v1/readers/r-1", json={"marketing_opt_in": True}, headers=site_key)
    assert resp.status_code == 200
    assert resp.get_json()["marketing_opt_in"] is True
    assert resp.get_json()["email"] == "ana@example.org"

    got = client.get("/v1/readers/r-1", headers=site_key).get_json()
    assert got["name"] == "Ana" and got["marketing_opt_in"] is True


def test_get_unknown_reader_is_404(client: FlaskClient, site_key: dict[str, str]) -> None:
    assert_problem(client.get("/v1/readers/nobody", headers=site_key), 404, "reader")


def test_delete_erases_personal_data(
    client: FlaskClient, site_key: dict[str, str], admin_key: dict[str, str]
) -> None:
    client.put("/v1/readers/r-2", json={"email": "b@example.org", "name": "B"}, headers=site_key)
    resp = client.delete("/v1/readers/r-2", headers=admin_key)
    assert resp.status_code == 200
    assert resp.get_json() == {"reader": "r-2", "outcome": "erased"}
    got = client.get("/v1/readers/r-2", headers=site_key).get_json()
    assert got["email"] is None and got["name"] is None and got["erased"] is True
    assert client.delete("/v1/readers/r-2", headers=admin_key).get_json()["outcome"] == "already_erased"
    assert_problem(client.delete("/v1/readers/nobody", headers=admin_key), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/v1/readers/x", {"site", "admin"}),
        ("get", "/v1/readers/x", {"site", "admin"}),
        ("delete", "/v1/readers/x", {"admin"}),
    ],
)
def test_roles(
    client: FlaskClient,
    make_key: Callable[[str], dict[str, str]],
    method: str,
    path: str,
    allowed: set[str],
) -> None:
    call = getattr(client, method)
    kwargs = {"json": {"email": "x@example.org"}} if method == "put" else {}
    assert_problem(call(path, **kwargs), 401)
    assert_problem(call(path, headers={"Authorization": "Bearer pw_nope_nope"}, **kwargs), 401)
    assert_problem(call(path, headers={"Authorization": "Basic Zm9vOmJhcg=="}, **kwargs), 401)
    for role in ("site", "finance", "admin"):
        resp = call(path, headers=make_key(role), **kwargs)
        if role in allowed:
            assert resp.status_code in (200, 201, 404), (role, resp.get_json())
        else:
            assert_problem(resp, 403)


def test_revoked_key_is_refused(client: FlaskClient, db: Database, runner: CliRunner) -> None:
    from paywall.cli import main

    out = runner.invoke(main, ["keys", "create", "--role", "site", "--name", "gone"])
    key = out.output.split()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    assert client.put("/v1/readers/z", json={}, headers=headers).status_code == 201
    assert runner.invoke(main, ["keys", "revoke", "gone"]).exit_code == 0
    client.application.extensions["paywall.keycache"].clear()
    assert_problem(client.get("/v1/readers/z", headers=headers), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"name": 12}, "name"),
        ({"marketing_opt_in": "maybe"}, "marketing_opt_in"),
        ({"unknown": 1}, "unknown"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_bad_fields_name_the_field(
    client: FlaskClient, site_key: dict[str, str], body: dict[str, object], field: str
) -> None:
    assert_problem(client.put("/v1/readers/r", json=body, headers=site_key), 422, field)


def test_bad_reader_ids(client: FlaskClient, site_key: dict[str, str]) -> None:
    assert_problem(client.put("/v1/readers/" + "x" * 129, json={}, headers=site_key), 422, "reader")
    assert_problem(client.put("/v1/readers/a%01b", json={}, headers=site_key), 422, "reader")


def test_malformed_json_and_wrong_body_types(client: FlaskClient, site_key: dict[str, str]) -> None:
    resp = client.put(
        "/v1/readers/r", data="{not json", headers={**site_key, "Content-Type": "application/json"}
    )
    assert_problem(resp, 400, "body")
    assert_problem(client.put("/v1/readers/r", json=[1, 2], headers=site_key), 422)
    assert_problem(client.put("/v1/readers/r", json="text", headers=site_key), 422)


def test_body_too_large(client: FlaskClient, site_key: dict[str, str]) -> None:
    big = "x" * (1024 * 1024 + 10)
    resp = client.put("/v1/readers/r", data=big, headers={**site_key, "Content-Type": "application/json"})
    assert_problem(resp, 413)


def test_unknown_route_and_method(client: FlaskClient) -> None:
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.post("/healthz"), 405)


def test_health_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["database"] == "ok"
    spec = client.get("/openapi.json").get_json()
    assert "/v1/readers/{reader}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    page = client.get("/docs")
    assert page.status_code == 200 and b"/v1/readers/{reader}" in page.data
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_readyz_is_503_when_database_is_down(make_settings: Callable[..., Settings]) -> None:
    from paywall.app import create_app

    app = create_app(make_settings({"PAYWALL_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["database"] == "unreachable"
