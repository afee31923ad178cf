"""Who may call each API route, pinned here: 401 without a valid key, 403 for a role the route does
not allow, never either for one it does.

The table is written out in this file on purpose. Reading the roles back from the generated API
description (as this test once did) let it widen with the code: giving the finance role the reader's
billing portal changed the description and the test alike, and the test stayed green. A new route
fails ``test_every_api_route_is_in_the_table`` until someone decides, here, who may call it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.system.test_contract import APP

SITE = frozenset({"site", "admin"})
FINANCE = frozenset({"finance", "admin"})
ADMIN = frozenset({"admin"})

# (method, path as in the OpenAPI description) -> the roles that may call it.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/access"): SITE,
    ("POST", "/v1/access/token"): SITE,
    ("POST", "/v1/appeals/dismiss"): SITE,
    ("POST", "/v1/checkout/donation"): SITE,
    ("POST", "/v1/checkout/subscription"): SITE,
    ("GET", "/v1/plans"): SITE,
    ("POST", "/v1/portal"): SITE,
    ("POST", "/v1/signin"): SITE,
    ("POST", "/v1/signin/exchange"): SITE,
    ("POST", "/v1/signout"): SITE,
    ("GET", "/v1/readers/{reader}"): SITE,
    ("PUT", "/v1/readers/{reader}"): SITE,
    ("DELETE", "/v1/readers/{reader}"): ADMIN,
    ("GET", "/v1/comps/{reader}"): ADMIN,
    ("PUT", "/v1/comps/{reader}"): ADMIN,
    ("DELETE", "/v1/comps/{reader}"): ADMIN,
    ("GET", "/v1/events"): ADMIN,
    ("GET", "/v1/reports/campaigns"): FINANCE,
    ("GET", "/v1/reports/donors"): FINANCE,
    ("GET", "/v1/reports/experiments"): FINANCE,
    ("GET", "/v1/reports/payments"): FINANCE,
    ("GET", "/v1/reports/payouts"): FINANCE,
    ("GET", "/v1/reports/revenue"): FINANCE,
    ("GET", "/v1/reports/subscriptions"): FINANCE,
}

SPEC: dict[str, Any] = APP.extensions["paywall.api"].spec.to_dict()


def _app_routes() -> set[tuple[str, str]]:
    """Every /v1/ route the app serves (not only the documented ones), in the description's spelling."""
    routes = set()
    for rule in APP.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return routes


def test_every_api_route_is_in_the_table() -> None:
    assert _app_routes() == set(ALLOWED)


def test_the_description_documents_the_same_roles() -> None:
    for (method, path), allowed in ALLOWED.items():
        op = SPEC["paths"][path][method.lower()]
        assert op.get("security"), f"{method} {path} does not document its key requirement"
        match = re.search(r"Roles: ([a-z, ]+)\.", op.get("description", ""))
        assert match, f"{method} {path} does not document its roles"
        assert {r.strip() for r in match.group(1).split(",")} == allowed, f"{method} {path}"


@pytest.mark.parametrize(("method", "path"), sorted(ALLOWED), ids=[f"{m} {p}" for m, p in sorted(ALLOWED)])
def test_each_route_allows_exactly_the_pinned_roles(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], method: str, path: str
) -> None:
    url = path.replace("{reader}", "role-test-reader")
    kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
    call = getattr(client, method.lower())
    allowed = ALLOWED[(method, path)]
    assert call(url, **kwargs).status_code == 401
    assert (
        call(url, headers={"Authorization": "Bearer pw_0000000000000000_forged"}, **kwargs).status_code == 401
    )
    for role in ("site", "finance", "admin"):
        status = call(url, headers=make_key(role), **kwargs).status_code
        if role in allowed:
            assert status not in (401, 403), (role, status)
        else:
            assert status == 403, (role, status)
