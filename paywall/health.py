"""Liveness and readiness probes."""

from __future__ import annotations

import functools
from typing import Any

from marshmallow import Schema, fields

from paywall.api import Blueprint
from paywall.config import ROOT
from paywall.context import current_db, current_settings
from paywall.db import Database
from paywall.webhooks import backlog

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


class StatusSchema(Schema):
    status = fields.String(required=True)
    database = fields.String(
        metadata={"description": "ok, unreachable, or unmigrated (run `paywall db upgrade`)"}
    )
    stripe_sync = fields.String(
        metadata={
            "description": "ok, or lagging (the oldest recorded Stripe event has waited longer than "
            "[stripe] max_apply_lag_seconds: is an applier running? see `paywall stripe apply`)"
        }
    )
    waiting = fields.Integer(metadata={"description": "Stripe events recorded, not yet applied."})
    oldest_waiting_seconds = fields.Float(
        metadata={"description": "How long the oldest of them has waited, in seconds."}
    )


@functools.cache
def code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The heads and all revisions of this code's migrations (read once per process)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(ROOT / "migrations"))
    known = frozenset(rev.revision for rev in script.walk_revisions())
    return frozenset(script.get_heads()), known


def is_migrated(db: Database) -> bool:
    """Whether the database is at every migration head of this code.

    Features migrate on branches of their own, so there are several heads. A revision this code
    does not know means newer code migrated the database ahead (migrations are additive, so this
    code still runs): that counts as migrated unless a revision it does know is still behind.
    """
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
        conn.rollback()
    heads, known = code_revisions()
    if not current:
        return False
    if current - known:
        return not (current & known) - heads
    return current == heads


@blp.route("/healthz")
@blp.response(200, StatusSchema)
def healthz() -> dict[str, Any]:
    """The process is alive (does not touch the database)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, StatusSchema)
@blp.alt_response(
    503,
    schema=StatusSchema,
    description="The database does not answer, or is not at this code's migrations (`paywall db upgrade`).",
)
def readyz() -> Any:
    """The database answers and is migrated; 503 otherwise, so a load balancer sends no traffic.

    ``degraded`` (200) when Stripe events wait longer than ``[stripe] max_apply_lag_seconds`` to
    be applied: the service works, but payments reach readers late."""
    db = current_db()
    if not db.ping():
        return {"status": "unavailable", "database": "unreachable"}, 503
    try:
        migrated = is_migrated(db)
    except Exception:  # the database went away between the two queries
        return {"status": "unavailable", "database": "unreachable"}, 503
    if not migrated:
        return {"status": "unavailable", "database": "unmigrated"}, 503
    try:
        with db.transaction(readonly=True) as session:
            waiting = backlog.read(session)
    except Exception:
        return {"status": "unavailable", "database": "unreachable"}, 503
    body = {
        "database": "ok",
        "waiting": waiting.waiting,
        "oldest_waiting_seconds": round(waiting.oldest_seconds, 3),
    }
    if waiting.oldest_seconds > current_settings().stripe.max_apply_lag_seconds:
        # Still 200: this server records events and answers readers; taking it out of the load
        # balancer would not apply one event sooner. The applier is what needs a look.
        return {"status": "degraded", "stripe_sync": "lagging", **body}
    return {"status": "ok", "stripe_sync": "ok", **body}
