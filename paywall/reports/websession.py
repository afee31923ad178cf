"""The /reports sign-in: a signed, HttpOnly cookie holding a session token, plus CSRF.

Each sign-in is a ``report_sessions`` row (only the token's SHA-256 is stored) naming the finance
key that signed in; signing out deletes the row, so the session ends on the server and a copy of
the cookie is worth nothing after.

The cookie is ours (not Flask's app-wide session), so its name, lifetime and flags are this
feature's business alone. It is signed with ``PAYWALL_SESSION_SECRET`` (itsdangerous, as Flask's
own session is); in development, when that is unset, a secret is generated once under var/.
Every use re-checks the key, so revoking it ends the sign-in within seconds.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from paywall import clock
from paywall.auth import Caller, hash_secret
from paywall.config import Settings
from paywall.context import current_db, current_settings
from paywall.errors import not_configured
from paywall.models import ApiKey, ReportSession
from paywall.reports.settings import report_settings

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


def open_session(key_id: str) -> dict[str, Any]:
    """Record a sign-in by the key ``key_id`` (the caller checked it); the new cookie's data, with a
    fresh CSRF token. Expired sessions are swept here."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    with current_db().transaction() as session:
        api_key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_id == key_id))
        if api_key_id is None:
            raise LookupError("the key vanished while signing in")
        session.execute(delete(ReportSession).where(ReportSession.expires_at <= now))
        session.add(
            ReportSession(
                token_hash=hash_secret(token),
                api_key_id=api_key_id,
                created_at=now,
                expires_at=now + dt.timedelta(seconds=_max_age()),
            )
        )
    data: dict[str, Any] = {"sid": token}
    csrf_token(data)
    return data


def end_session(data: dict[str, Any]) -> None:
    """Sign out on the server: the session's row goes, whoever holds a copy of the cookie."""
    token = data.get("sid")
    if isinstance(token, str) and token:
        with current_db().transaction() as session:
            session.execute(delete(ReportSession).where(ReportSession.token_hash == hash_secret(token)))


def signed_in_caller(data: dict[str, Any] | None = None) -> Caller | None:
    """The finance or admin key this session signed in with, if the session and the key are live."""
    data = load() if data is None else data
    token = data.get("sid")
    if not isinstance(token, str) or not token:
        return None
    with current_db().transaction(readonly=True) as session:
        row = session.execute(
            select(ApiKey.name, ApiKey.role, ApiKey.revoked_at)
            .join(ReportSession, ReportSession.api_key_id == ApiKey.id)
            .where(ReportSession.token_hash == hash_secret(token), ReportSession.expires_at > clock.now())
        ).first()
    if row is None or row.revoked_at is not None or row.role not in FINANCE_ROLES:
        return None
    return Caller(name=row.name, role=row.role)
