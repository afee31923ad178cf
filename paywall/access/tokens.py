"""Signed access tokens: the decision as a short-lived JWT (EdDSA) the site verifies offline.

Claims: ``sub`` (reader id), ``access`` (bool), ``reason``, ``until`` (NumericDate or null),
``appeal`` (bool), ``meter`` (or null), plus ``pur`` = "access", ``iat`` and ``exp`` from
paywall/signing.py. ``access`` is true only for an entitlement (comp, subscription, trial, grace
period, donation): a site cannot meter offline, so for a reader with free articles left the token
says ``access: false, reason: "metered"`` and the site asks ``POST /v1/access`` per new article.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from paywall import clock, signing
from paywall.access.rules import Decision
from paywall.access.service import evaluate
from paywall.access.settings import access_settings
from paywall.config import Settings

PURPOSE = "access"


def token_claims(reader: str, decision: Decision) -> dict[str, Any]:
    """The claims (besides pur/iat/exp) for a decision made without an article."""
    entitled = decision.allowed and decision.reason != "metered"
    return {
        "sub": reader,
        "access": entitled,
        "reason": decision.reason,
        "until": int(decision.until.timestamp()) if decision.until else None,
        "appeal": decision.appeal,
        "meter": decision.meter.as_dict() if decision.meter else None,
    }


def issue_access_token(session: Session, settings: Settings, reader: str) -> tuple[str, dt.datetime]:
    """A signed access token for ``reader`` and its expiry; writes nothing."""
    cfg = access_settings(settings)
    now = clock.now()
    decision = evaluate(session, settings, reader, None, now, record=False)
    claims = token_claims(reader, decision)
    ttl = cfg.token_ttl
    if claims["access"] and decision.until is not None:
        # Never let a token outlive the access it grants (a comp ending in five minutes).
        ttl = max(dt.timedelta(seconds=1), min(ttl, decision.until - now))
    return signing.sign(settings, claims, purpose=PURPOSE, ttl=ttl)
