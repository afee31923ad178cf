"""API keys and roles.

A key looks like ``pw_<key id>_<secret>``. The key id is public and indexed, so a lookup never
compares secrets in SQL; only the SHA-256 of the secret is stored and it is compared with
``hmac.compare_digest``. The secret has 256 bits of entropy, so a fast hash is the right one (a slow
password hash would only slow every request down).

Roles: ``site`` (reader access, readers, checkout), ``finance`` (reports), ``admin`` (everything).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, request
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.context import db_of
from paywall.errors import ApiError
from paywall.models import ApiKey

ROLES = ("site", "finance", "admin")
F = TypeVar("F", bound=Callable[..., Any])

# Seconds a looked-up key is remembered per process; revocation takes effect within this time.
KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name and role."""

    name: str
    role: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "pw" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_key(session: Session, *, role: str, name: str) -> tuple[ApiKey, str]:
    """Create a key for ``role``; returns the row and the full key, which is never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 100:
        raise ValueError("name must be 1 to 100 characters")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ValueError(f"a key named {name!r} already exists")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    row = ApiKey(key_id=key_id, name=name, role=role, secret_hash=hash_secret(secret))
    session.add(row)
    session.flush()
    return row, f"pw_{key_id}_{secret}"


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, name: str) -> str:
    """Revoke the key called ``name``: 'revoked', 'already_revoked' or 'not_found'."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        return "not_found"
    if row.revoked_at is not None:
        return "already_revoked"
    row.revoked_at = clock.now()
    return "revoked"


class KeyCache:
    """A short-lived per-process cache of key id -> (name, role, hash, revoked)."""

    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, tuple[str, str, str, bool] | None]] = {}

    def get(self, key_id: str) -> tuple[bool, tuple[str, str, str, bool] | None]:
        with self._lock:
            item = self._items.get(key_id)
        if item is None or item[0] < time.monotonic():
            return False, None
        return True, item[1]

    def put(self, key_id: str, value: tuple[str, str, str, bool] | None) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key_id] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def authenticate(header: str | None) -> Caller:
    """The caller named by an ``Authorization: Bearer`` header, or a 401 ApiError (this request's)."""
    from paywall.checkout.limits import client_address

    return check_key(current_app, header, client_address)


def check_key(app: Flask, header: str | None, address: Callable[[], str]) -> Caller:
    """The caller named by ``header`` (``Bearer KEY``) for ``app``, or a 401/429 ApiError.

    ``address`` names the client (called only when a key was offered), whose failed checks are
    counted by the failed-key throttle. Needs no request context: a route answered in front of
    Flask (paywall/access/endpoint.py) calls it with its environ's address.
    """
    if not header:
        raise _unauthorized()  # no key: nothing guessed, so nothing counted (always 401)
    # A key was offered: past too many failures from this address, it is not even checked.
    from paywall.checkout.limits import auth_retry_after, note_auth_failure

    client = address()
    retry_after = auth_retry_after(app, client)
    if retry_after is not None:
        raise ApiError(
            429,
            "Too many failed key checks from this address; wait and try again.",
            type_="too-many-requests",
            headers={"Retry-After": str(retry_after)},
        )
    parts = split_key(header[len("Bearer ") :].strip()) if header.startswith("Bearer ") else None
    if parts is None:
        note_auth_failure(app, client)
        raise _unauthorized()
    key_id, secret = parts
    cache: KeyCache = app.extensions["paywall.keycache"]
    hit, found = cache.get(key_id)
    if not hit:
        with db_of(app).transaction(readonly=True) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            found = None if row is None else (row.name, row.role, row.secret_hash, row.revoked_at is not None)
        cache.put(key_id, found)
    # Compare against a dummy hash when the id is unknown, so timing does not tell ids apart.
    expected = found[2] if found else hash_secret("unknown-key")
    ok = hmac.compare_digest(hash_secret(secret), expected)
    if not found or not ok or found[3]:
        note_auth_failure(app, client)
        raise _unauthorized()
    return Caller(name=found[0], role=found[1])


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "A valid API key is required (Authorization: Bearer KEY).",
        type_="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="paywall"'},
    )


def check_role(caller: Caller, roles: Iterable[str]) -> Caller:
    """``caller``, who must hold one of ``roles`` (admin may do everything): else a 403 ApiError."""
    allowed = set(roles) | {"admin"}
    if caller.role not in allowed:
        raise ApiError(
            403,
            f"This key's role ({caller.role}) may not do this; needs {' or '.join(sorted(allowed))}.",
            type_="forbidden",
        )
    return caller


def authorize(*roles: str) -> Caller:
    """This request's caller, who must hold one of ``roles`` (admin may do everything): else a 401
    or 403 ApiError. Also kept as ``g.caller``."""
    caller = check_role(authenticate(request.headers.get("Authorization")), roles)
    g.caller = caller
    return caller


def require_role(*roles: str) -> Callable[[F], F]:
    """Decorator: the caller's key must have one of ``roles``; admin may do everything."""
    allowed = set(roles) | {"admin"}

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(*roles)
            return view(*args, **kwargs)

        # Document the requirement in the OpenAPI description (flask-smorest's doc decorator).
        problem = {"$ref": "#/components/schemas/Error"}
        documented = Blueprint.doc(
            security=[{"bearerAuth": []}],
            description=f"Roles: {', '.join(sorted(allowed))}.",
            responses={
                "401": {
                    "description": "No key, or an unknown or revoked key.",
                    "content": {"application/problem+json": {"schema": problem}},
                },
                "403": {
                    "description": "The key's role may not do this.",
                    "content": {"application/problem+json": {"schema": problem}},
                },
                "429": {
                    "description": "Too many failed key checks from this address ([ratelimit] "
                    "auth_failures_per_address); see Retry-After.",
                    "content": {"application/problem+json": {"schema": problem}},
                },
            },
        )(wrapper)
        return cast(F, documented)

    return decorator
