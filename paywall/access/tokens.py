"""Signed access tokens: the decision as a short-lived JWT (EdDSA) the site verifies offline.

Claims: ``sub`` (reader id, or an anonymous browser's key), ``access`` (bool), ``reason``, ``until``
(NumericDate or null), ``appeal`` (bool), ``meter`` (or null), ``lvl`` (the level asked for),
``reg`` (bool: signing up would give this reader more), ``art`` (the article, when the decision
was for one), ``anon: true`` when ``sub`` is an anonymous browser (paywall/access/anonymous.py),
``appeal_experiment`` and ``appeal_variant`` when a footer experiment assigned the subject (the
variant's name, or ``holdback``; paywall/access/asking.py), plus ``pur`` = "access", ``iat`` and
``exp`` from paywall/signing.py.

``access`` is true only for an entitlement (comp, subscription, trial, grace period, donation): a
site cannot meter offline, so for a reader with free articles left the token says
``access: false, reason: "metered"`` and the site asks ``POST /v1/access`` per new article. A free
article (``reason: "free"``) is no entitlement either: the token says so for that article only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from paywall import clock, signing
from paywall.access.rules import DEFAULT_LEVEL, ENTITLEMENTS, Decision
from paywall.access.service import evaluate
from paywall.access.settings import access_settings
from paywall.config import Settings

PURPOSE = "access"


def token_claims(
    reader: str, decision: Decision, *, article: str | None = None, anonymous: bool = False
) -> dict[str, Any]:
    """The claims (besides pur/iat/exp) for a decision (``article``: the one it was made for)."""
    claims: dict[str, Any] = {
        "sub": reader,
        "access": decision.allowed and decision.reason in ENTITLEMENTS,
        "reason": decision.reason,
        "until": int(decision.until.timestamp()) if decision.until else None,
        "appeal": decision.appeal,
        "meter": decision.meter.as_dict() if decision.meter else None,
        "lvl": decision.level,
        "reg": decision.register,
    }
    if decision.experiment:
        # The footer arm this decision put the subject in (the appeal flag already says whether
        # it is shown: false for ``holdback``); GET /support/appeal answers its copy.
        claims["appeal_experiment"] = decision.experiment
        claims["appeal_variant"] = decision.variant
    if article is not None:
        claims["art"] = article
    if anonymous:
        claims["anon"] = True
    return claims


def sign_decision(
    settings: Settings,
    reader: str,
    decision: Decision,
    now: dt.datetime,
    *,
    article: str | None = None,
    anonymous: bool = False,
) -> tuple[str, dt.datetime]:
    """A signed access token for a decision already made, and its expiry."""
    claims = token_claims(reader, decision, article=article, anonymous=anonymous)
    ttl = access_settings(settings).token_ttl
    if claims["access"] and decision.until is not None:
        # Never let a token outlive the access it grants (a comp ending in five minutes).
        ttl = max(dt.timedelta(seconds=1), min(ttl, decision.until - now))
    return signing.sign(settings, claims, purpose=PURPOSE, ttl=ttl)


def issue_access_token(
    session: Session, settings: Settings, reader: str, *, level: str = DEFAULT_LEVEL
) -> tuple[str, dt.datetime]:
    """A signed access token for ``reader`` (no article, nothing metered) and its expiry; writes nothing."""
    now = clock.now()
    decision = evaluate(session, settings, reader, None, now, record=False, level=level)
    return sign_decision(settings, reader, decision, now)
