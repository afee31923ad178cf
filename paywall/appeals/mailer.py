"""Render and send a campaign, each (campaign, reader) at most once.

The rule, per recipient:

1. **claim**: insert the ledger row (unique on campaign and reader) in its own committed
   transaction. If the row exists, the reader is skipped: ``already_sent``, or ``claimed`` when an
   earlier run claimed it and never recorded an outcome (it crashed, or is still running).
2. **send** over SMTP.
3. **mark** the row ``sent``, ``failed`` (refused; a hard bounce also suppresses the address) or
   ``unknown`` (the connection dropped after the body went out). To save a commit per message, the
   mark rides in the next claim's transaction (and is flushed when the run ends or is interrupted).

A claimed row whose outcome was never recorded is **not** resent by a later run: at most once, not
at least once. An operator who knows the message did not go out can release it
(``paywall appeals release``), and the next run sends it.

Only a transient failure that provably sent nothing (every attempt refused with 4xx, or the
connection failed before the body) releases the claim by itself, and stops the run.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from paywall import clock
from paywall.appeals.campaigns import Campaign
from paywall.appeals.selection import Candidate, candidates, exclusion
from paywall.config import Settings
from paywall.db import Database
from paywall.mail.links import reader_link, unsubscribe_url
from paywall.mail.message import build_message
from paywall.mail.settings import appeal_pause_days
from paywall.mail.smtp import Delivery, MailConfigError, SmtpTransport, TransientFailure
from paywall.mail.sql import insert_ignore
from paywall.mail.suppression import is_suppressed, suppress
from paywall.models import AppealSend, Reader

log = logging.getLogger(__name__)

# Ledger state -> the tally word for a reader found already in the ledger.
EXISTING = {"sent": "already_sent", "claimed": "claimed", "unknown": "claimed", "failed": "already_failed"}


class OutsideWindow(Exception):
    """The campaign's send window is closed (use --force to send anyway)."""


@dataclass
class SendReport:
    """What a run did: a tally of outcomes, who would get it (dry run), and why it stopped early."""

    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    would_send: list[Candidate] = field(default_factory=list)
    stopped: str | None = None


@dataclass
class _Mark:
    reader_id: int
    state: str
    message_id: str | None = None
    error: str | None = None
    suppress_email: str | None = None


def appeal_context(
    settings: Settings, campaign: Campaign, external_id: str, name: str | None
) -> dict[str, Any]:
    """The template variables for one reader."""
    return {
        "reader_name": (name or "").strip(),
        "campaign": campaign.name,
        "subscribe_url": reader_link(settings, external_id, "subscribe", campaign.name),
        "donate_url": reader_link(settings, external_id, "donate", campaign.name),
        "unsubscribe_url": unsubscribe_url(settings, external_id, campaign.name),
    }


def build_appeal(
    settings: Settings, campaign: Campaign, *, external_id: str, email: str, name: str | None
) -> EmailMessage:
    """The message one reader gets (also what `paywall appeals preview` prints)."""
    context = appeal_context(settings, campaign, external_id, name)
    rendered = campaign.render(context)
    return build_message(
        sender=campaign.sender_for(settings),
        to=email,
        to_name=name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        unsubscribe_url=context["unsubscribe_url"],
        headers={"X-Campaign": campaign.name},
    )


def _apply_marks(session: Session, campaign: str, marks: list[_Mark]) -> None:
    now = clock.now()
    for mark in marks:
        session.execute(
            update(AppealSend)
            .where(AppealSend.campaign == campaign, AppealSend.reader_id == mark.reader_id)
            .values(state=mark.state, message_id=mark.message_id, error=mark.error, finished_at=now)
        )
        if mark.suppress_email:
            suppress(session, mark.suppress_email, reason="hard_bounce", detail=mark.error)
    marks.clear()


def _claim(session: Session, campaign: str, reader_id: int) -> tuple[str, Reader | None]:
    """Re-check the reader and insert the ledger row: ('claimed', reader) or (reason, None)."""
    reader = session.get(Reader, reader_id)
    if reader is None:
        return "erased", None
    reason = exclusion(reader.email, reader.unsubscribed_at, reader.erased_at, set())
    if reason is None and reader.email and is_suppressed(session, reader.email):
        reason = "suppressed"
    if reason is not None:
        return reason, None
    values = {"campaign": campaign, "reader_id": reader_id, "state": "claimed", "claimed_at": clock.now()}
    if insert_ignore(session, AppealSend, values, ["campaign", "reader_id"]):
        return "claimed", reader
    state = session.scalar(
        select(AppealSend.state).where(AppealSend.campaign == campaign, AppealSend.reader_id == reader_id)
    )
    return EXISTING.get(state or "", "claimed"), None


def _outcome(delivery: Delivery, reader_id: int, email: str, message_id: str | None) -> tuple[str, _Mark]:
    if delivery.status == "sent":
        return "sent", _Mark(reader_id, "sent", message_id)
    if delivery.status == "unknown":
        return "unknown", _Mark(reader_id, "unknown", message_id, delivery.error)
    mark = _Mark(reader_id, "failed", message_id, delivery.error, email if delivery.hard_bounce else None)
    return "failed", mark


def send_campaign(
    db: Database,
    settings: Settings,
    campaign: Campaign,
    transport: SmtpTransport | None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    now: Callable[[], Any] = clock.now,
    progress: Callable[[str, Candidate], None] | None = None,
) -> SendReport:
    """Send ``campaign`` to its segment once per reader; returns the tally (see the module doc)."""
    report = SendReport()
    window = campaign.window
    if window is not None and not force and not window.contains(now()):
        raise OutsideWindow(f"{campaign.name}: outside its send window {window.describe()}")
    with db.transaction(readonly=True) as session:
        people = list(
            candidates(session, campaign.segment, now=now(), pause_days=appeal_pause_days(settings))
        )
        ledger: dict[int, str] = {
            reader_id: state
            for reader_id, state in session.execute(
                select(AppealSend.reader_id, AppealSend.state).where(AppealSend.campaign == campaign.name)
            )
        }
    if not dry_run and transport is None:
        raise ValueError("a transport is needed unless dry_run")
    tally = report.tally
    marks: list[_Mark] = []
    attempted = 0
    try:
        for cand in people:
            if cand.excluded:
                tally[cand.excluded] += 1
                continue
            if cand.reader_id in ledger:
                tally[EXISTING.get(ledger[cand.reader_id], "claimed")] += 1
                continue
            if limit is not None and attempted >= limit:
                tally["over_limit"] += 1
                continue
            attempted += 1
            if dry_run:
                tally["would_send"] += 1
                report.would_send.append(cand)
                continue
            if window is not None and not force and not window.contains(now()):
                report.stopped = f"send window closed ({window.describe()}); rerun to continue"
                break
            with db.transaction() as session:
                _apply_marks(session, campaign.name, marks)
                claim, reader = _claim(session, campaign.name, cand.reader_id)
                snapshot = (reader.external_id, reader.email or "", reader.name) if reader else None
            if snapshot is None:
                tally[claim] += 1
                continue
            external_id, email, name = snapshot
            if transport is None:  # checked above; keeps the type checker informed
                raise ValueError("a transport is needed unless dry_run")
            try:
                msg = build_appeal(settings, campaign, external_id=external_id, email=email, name=name)
                delivery = transport.send(msg)
            except (TransientFailure, MailConfigError) as exc:
                # Nothing reached the server: give the claim back so a later run sends it.
                with db.transaction() as session:
                    _apply_marks(session, campaign.name, marks)
                    _release(session, campaign.name, [cand.reader_id])
                tally["deferred"] += 1
                report.stopped = f"SMTP: {exc}"
                if isinstance(exc, MailConfigError):
                    raise
                break
            except Exception:
                # A bug while rendering (before anything was sent): give the claim back, then fail.
                with db.transaction() as session:
                    _apply_marks(session, campaign.name, marks)
                    _release(session, campaign.name, [cand.reader_id])
                raise
            word, mark = _outcome(delivery, cand.reader_id, email, msg["Message-ID"])
            marks.append(mark)
            tally[word] += 1
            if progress is not None:
                progress(word, cand)
    finally:
        if marks:
            with db.transaction() as session:
                _apply_marks(session, campaign.name, marks)
    return report


def _release(session: Session, campaign: str, reader_ids: Iterable[int]) -> int:
    result = session.execute(
        delete(AppealSend).where(
            AppealSend.campaign == campaign,
            AppealSend.reader_id.in_(list(reader_ids)),
            AppealSend.state == "claimed",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release_claims(session: Session, campaign: str, *, reader_ids: list[int] | None = None) -> int:
    """Forget claimed/unknown rows (all of the campaign's, or these readers'): the next run sends them.

    Only for an operator who has checked that those messages did not go out.
    """
    stmt = delete(AppealSend).where(
        AppealSend.campaign == campaign, AppealSend.state.in_(("claimed", "unknown"))
    )
    if reader_ids is not None:
        stmt = stmt.where(AppealSend.reader_id.in_(reader_ids))
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def ledger_summary(session: Session, campaign: str) -> dict[str, int]:
    """How many ledger rows of ``campaign`` are in each state."""
    rows = session.execute(
        select(AppealSend.state, func.count())
        .where(AppealSend.campaign == campaign)
        .group_by(AppealSend.state)
    )
    return {state: int(count) for state, count in rows}
