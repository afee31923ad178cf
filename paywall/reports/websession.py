"""The /reports sign-in: a signed, HttpOnly cookie holding which finance key signed in, plus CSRF.

The cookie is ours (not Flask's app-wide session), so its name, lifetime and flags are this
feature's business alone. It is signed with ``PAYWALL_SESSION_SECRET`` (itsdangerous, as Flask's
own session is); in development, when that is unset, a secret is generated once under var/.
Every use re-checks the key, so revoking it ends the sign-in within seconds.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response

from paywall.auth import Caller
from paywall.config import Settings
from paywall.context import current_db, current_settings
from paywall.errors import not_configured
from paywall.models import ApiKey
from paywall.reports.periods import report_settings

log = logging.getLogger(__name__)

COOKIE = "paywall_reports"
SALT = "paywall.reports.session"
DEV_SECRET_FILE = "var/session-secret"  # noqa: S105 - a path, not a secret
FINANCE_ROLES = ("finance", "admin")


def load_secret(settings: Settings) -> str | None:
    """The session secret: the environment's, else (development only) one kept under var/."""
    if settings.secrets.session_secret:
        return settings.secrets.session_secret
    if settings.server.public_url.startswith("https://"):
        # A public deployment must share one secret across workers and hosts: no file fallback.
        log.warning("not configured: PAYWALL_SESSION_SECRET (the /reports sign-in answers 503)")
        return None
    path = settings.resolve_path(DEV_SECRET_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of several workers starting at once, one writes the secret and all read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Path(path).read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    log.warning(
        "PAYWALL_SESSION_SECRET is not set: generated a development session secret in %s "
        "(set PAYWALL_SESSION_SECRET in production)",
        path,
    )
    return Path(path).read_text().strip()


def init_session(app: Flask, settings: Settings) -> None:
    """Derive the cookie signer once, at start."""
    secret = load_secret(settings)
    app.extensions["paywall.reports.signer"] = (
        URLSafeTimedSerializer(secret, salt=SALT) if secret is not None else None
    )


def _signer() -> URLSafeTimedSerializer:
    signer: URLSafeTimedSerializer | None = current_app.extensions.get("paywall.reports.signer")
    if signer is None:
        raise not_configured("PAYWALL_SESSION_SECRET", "The /reports sign-in")
    return signer


def _max_age() -> int:
    return report_settings(current_settings()).session_hours * 3600


def load() -> dict[str, Any]:
    """The request's session (empty when absent, tampered with, or expired)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return {}
    try:
        data = _signer().loads(raw, max_age=_max_age())
    except BadSignature:
        return {}
    return data if isinstance(data, dict) else {}


def save(resp: Response, data: dict[str, Any]) -> None:
    """Set the signed cookie: HttpOnly, SameSite=Lax, Secure when the service is served over https."""
    settings: Settings = current_settings()
    resp.set_cookie(
        COOKIE,
        _signer().dumps(data),
        max_age=_max_age(),
        httponly=True,
        samesite="Lax",
        secure=settings.server.public_url.startswith("https://"),
        path="/",
    )


def clear(resp: Response) -> None:
    resp.delete_cookie(COOKIE, path="/")


def csrf_token(data: dict[str, Any]) -> str:
    """The session's CSRF token, created when missing (the caller saves the session)."""
    token = data.get("csrf")
    if not isinstance(token, str) or not token:
        token = data["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(data: dict[str, Any], submitted: str | None) -> bool:
    expected = data.get("csrf")
    if not isinstance(expected, str) or not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def signed_in_caller(data: dict[str, Any] | None = None) -> Caller | None:
    """The finance or admin key this session signed in with, if it is still valid."""
    data = load() if data is None else data
    key_id = data.get("kid")
    if not isinstance(key_id, str) or not key_id:
        return None
    with current_db().transaction(readonly=True) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None or row.revoked_at is not None or row.role not in FINANCE_ROLES:
            return None
        return Caller(name=row.name, role=row.role)
