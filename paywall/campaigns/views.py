"""GET/POST /unsubscribe?token=…: a harmless page with a button, and the RFC 8058 one-click POST.

Mail scanners and link previewers follow GET links, so GET changes nothing. The POST needs no
login and no cookie: the signed token (purpose "unsubscribe") says who. Mail clients send
``List-Unsubscribe=One-Click`` as a form body; it is accepted, and so is an empty body.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request

from paywall.campaigns.unsubscribe import mask_email, unsubscribe
from paywall.context import current_db, current_settings
from paywall.mail.links import UNSUBSCRIBE
from paywall.readers.service import find_reader
from paywall.signing import InvalidToken, verify

bp = Blueprint("unsubscribe", __name__, template_folder="templates")

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def _claims() -> tuple[dict[str, Any] | None, Any]:
    """The token's claims, or None and the 4xx page to answer with."""
    token = request.args.get("token") or request.form.get("token") or ""
    if not token:
        return None, (render_template("campaigns/unsubscribe_invalid.html", reason="missing"), 400, NO_STORE)
    try:
        claims = verify(current_settings(), token, purpose=UNSUBSCRIBE)
    except InvalidToken as exc:
        expired = "expired" in str(exc)
        status = 410 if expired else 400
        page = render_template(
            "campaigns/unsubscribe_invalid.html", reason="expired" if expired else "invalid"
        )
        return None, (page, status, NO_STORE)
    if not isinstance(claims.get("sub"), str):
        return None, (render_template("campaigns/unsubscribe_invalid.html", reason="invalid"), 400, NO_STORE)
    return claims, None


@bp.get("/unsubscribe")
def unsubscribe_page() -> Any:
    """The confirmation page: shows a button that POSTs; changes nothing."""
    claims, error = _claims()
    if claims is None:
        return error
    db = current_db()
    with db.transaction(readonly=True) as session:
        reader = find_reader(session, claims["sub"])
        already = reader is not None and reader.unsubscribed_at is not None
        masked = mask_email(reader.email if reader else None)
    return (
        render_template(
            "campaigns/unsubscribe.html", token=request.args.get("token", ""), masked=masked, already=already
        ),
        200,
        NO_STORE,
    )


@bp.post("/unsubscribe")
def unsubscribe_post() -> Any:
    """One-click unsubscribe (RFC 8058): idempotent, 200 whether or not it was already done."""
    claims, error = _claims()
    if claims is None:
        return error
    db = current_db()
    with db.transaction() as session:
        outcome = unsubscribe(session, claims["sub"])
    current_app.logger.info("unsubscribe: %s (campaign %s)", outcome, claims.get("cmp", "-"))
    return render_template("campaigns/unsubscribed.html"), 200, NO_STORE


def init_app(app: Flask, api: Any) -> None:
    """Register the pages (plain HTML, kept out of the JSON API description)."""
    app.register_blueprint(bp)
