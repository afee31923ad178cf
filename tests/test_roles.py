"""Every protected operation in the OpenAPI description, against no key, each role, and a revoked
key: 401 without a valid key, 403 for a role the operation does not list, never either for one it
does. The roles are read from the description itself, so a new route is covered the day it lands."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.test_contract import APP

SPEC: dict[str, Any] = APP.extensions["paywall.api"].spec.to_dict()
OPERATIONS = [
    (method.upper(), path, op)
    for path, item in sorted(SPEC["paths"].items())
    for method, op in sorted(item.items())
    if method in ("get", "post", "put", "delete") and op.get("security")
]


def roles_of(op: dict[str, Any]) -> set[str]:
    match = re.search(r"Roles: ([a-z, ]+)\.", op.get("description", ""))
    assert match, f"a protected operation must document its roles: {op.get('summary')}"
    return {r.strip() for r in match.group(1).split(",")}


def test_every_api_route_is_protected_and_listed() -> None:
    protected = {(m, p) for m, p, _ in OPERATIONS}
    assert len(protected) >= 18
    for path in SPEC["paths"]:
        if path.startswith("/v1/"):
            assert any(p == path for _, p in protected), f"{path} has no documented key requirement"


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_no_key_wrong_role_right_role(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], method: str, path: str, op: dict[str, Any]
) -> None:
    url = path.replace("{reader}", "role-test-reader")
    kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
    call = getattr(client, method.lower())
    allowed = roles_of(op)
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
