"""Render and send a campaign, each (campaign, reader) at most once.

The rule, per recipient:

1. **claim**: insert the ledger row (unique on campaign and reader) in a committed transaction,
   ``[mailer] claim_batch`` rows per commit (a durable commit per message cost more than the SMTP
   exchange on PostgreSQL). If the row exists, the reader is skipped: ``already_sent``, or
   ``claimed`` when an earlier run claimed it and never recorded an outcome (it crashed, or is
   still running). Claims of a batch that were never attempted are given back when the sender
   stops on an error or a signal; only a hard kill (SIGKILL, power loss) can leave up to a batch
   of unattempted claims, which are reported as ``claimed`` and never resent.
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
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, func, literal, select, update
from sqlalchemy.orm import Session

from paywall import clock
from paywall.campaigns.definition import Campaign
from paywall.campaigns.selection import Candidate, candidates, exclusion
from paywall.config import Settings
from paywall.db import Database, UTCDateTime, dialect_insert
from paywall.mail.links import reader_links, unsubscribe_url
from paywall.mail.message import build_message
from paywall.mail.settings import appeal_pause_days, mailer_settings
from paywall.mail.smtp import Delivery, MailConfigError, SmtpTransport, TransientFailure
from paywall.mail.suppression import email_hash, suppress, suppressed_hashes
from paywall.models import AppealSend, Reader

log = logging.getLogger(__name__)

# Ledger state -> the tally word for a reader found already in the ledger.
_LEDGER = cast(Table, AppealSend.__table__)
_READERS = cast(Table, Reader.__table__)

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
    row_id: int
    state: str
    message_id: str | None = None
    error: str | None = None
    suppress_email: str | None = None


def appeal_context(
    settings: Settings, campaign: Campaign, external_id: str, name: str | None
) -> dict[str, Any]:
    """The template variables for one reader."""
    links = reader_links(settings, external_id, ("subscribe", "donate"), campaign.name)
    return {
        "reader_name": (name or "").strip(),
        "campaign": campaign.name,
        "subscribe_url": links["subscribe"],
        "donate_url": links["donate"],
        "unsubscribe_url": unsubscribe_url(settings, external_id, campaign.name),
    }


def build_appeal(
    settings: Settings, campaign: Campaign, *, external_id: str, email: str, name: str | None
) -> Message:
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


# Both statements are built once (per dialect) and run with parameters: building them for every
# message cost more than executing them.
_MARK = (
    update(_LEDGER)
    .where(_LEDGER.c.id == bindparam("row_id"))
    .values(
        state=bindparam("state"),
        message_id=bindparam("message_id"),
        error=bindparam("error"),
        finished_at=bindparam("finished_at", type_=UTCDateTime()),
    )
)


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id, for one reader still eligible."""
    eligible = select(
        bindparam("campaign", type_=String()),
        _READERS.c.id,
        literal("claimed", String()),
        bindparam("claimed_at", type_=UTCDateTime()),
    ).where(
        _READERS.c.id == bindparam("reader_id"),
        _READERS.c.email == bindparam("email"),
        _READERS.c.marketing_opt_in.is_(True),
        _READERS.c.unsubscribed_at.is_(None),
        _READERS.c.erased_at.is_(None),
    )
    return (
        dialect_insert(dialect, _LEDGER)
        .from_select(["campaign", "reader_id", "state", "claimed_at"], eligible)
        .on_conflict_do_nothing(index_elements=["campaign", "reader_id"])
        .returning(_LEDGER.c.id)
    )


def _apply_marks(session: Session, marks: list[_Mark]) -> None:
    if not marks:
        return
    now = clock.now()
    rows = [
        {
            "row_id": m.row_id,
            "state": m.state,
            "message_id": m.message_id,
            "error": m.error,
            "finished_at": now,
        }
        for m in marks
    ]
    session.connection().execute(_MARK, rows)
    for mark in marks:
        if mark.suppress_email:
            suppress(session, mark.suppress_email, reason="hard_bounce", detail=mark.error)
    marks.clear()


def _claim(session: Session, campaign: str, cand: Candidate) -> int | None:
    """Insert the ledger row if the reader is still eligible at the same address; its id, or None.

    One statement: the unique key decides between racing senders, and the reader's unsubscribe or
    erasure is re-checked at the same instant.
    """
    conn = session.connection()
    params = {
        "campaign": campaign,
        "reader_id": cand.reader_id,
        "email": cand.email,
        "claimed_at": clock.now(),
    }
    row_id: int | None = conn.execute(_claim_statement(conn.dialect.name), params).scalar()
    return row_id


def _why_not(session: Session, campaign: str, reader_id: int) -> str:
    """Why a claim inserted nothing: the ledger row exists, or the reader changed since selection."""
    state = session.scalar(
        select(AppealSend.state).where(AppealSend.campaign == campaign, AppealSend.reader_id == reader_id)
    )
    if state is not None:
        return EXISTING.get(state, "claimed")
    reader = session.get(Reader, reader_id)
    if reader is None:
        return "erased"
    if not reader.marketing_opt_in:
        return "opted_out"
    return exclusion(reader.email, reader.unsubscribed_at, reader.erased_at, set()) or "address_changed"


def _outcome(delivery: Delivery, row_id: int, email: str, message_id: str | None) -> tuple[str, _Mark]:
    if delivery.status == "sent":
        return "sent", _Mark(row_id, "sent", message_id)
    if delivery.status == "unknown":
        return "unknown", _Mark(row_id, "unknown", message_id, delivery.error)
    mark = _Mark(row_id, "failed", message_id, delivery.error, email if delivery.hard_bounce else None)
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
    build: Callable[[Candidate], Message] | None = None,
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
    batch_size = max(1, mailer_settings(settings).claim_batch)
    # One connection for the whole run (a transaction per batch of claims on it): opening a
    # connection per transaction cost more than the SMTP exchange itself.
    with db.engine.connect() as conn, Session(bind=conn, expire_on_commit=False) as session:
        with session.begin():
            suppressed = suppressed_hashes(session)
        try:
            eligible: list[Candidate] = []
            for cand in people:
                if cand.excluded:
                    tally[cand.excluded] += 1
                    continue
                if cand.reader_id in ledger:
                    tally[EXISTING.get(ledger[cand.reader_id], "claimed")] += 1
                    continue
                if email_hash(cand.email or "") in suppressed:
                    tally["suppressed"] += 1
                    continue
                if limit is not None and attempted >= limit:
                    tally["over_limit"] += 1
                    continue
                attempted += 1
                if dry_run:
                    tally["would_send"] += 1
                    report.would_send.append(cand)
                    continue
                eligible.append(cand)
            if transport is None and eligible:  # checked above; keeps the type checker informed
                raise ValueError("a transport is needed unless dry_run")
            for start in range(0, len(eligible), batch_size):
                if window is not None and not force and not window.contains(now()):
                    report.stopped = f"send window closed ({window.describe()}); rerun to continue"
                    break
                # Claim a batch in one committed transaction (one durable commit per batch, not
                # per message), applying the previous batch's outcomes in the same commit.
                claimed: list[tuple[Candidate, int]] = []
                with session.begin():
                    _apply_marks(session, marks)
                    marks = []
                    for cand in eligible[start : start + batch_size]:
                        row_id = _claim(session, campaign.name, cand)
                        if row_id is None:
                            tally[_why_not(session, campaign.name, cand.reader_id)] += 1
                        else:
                            claimed.append((cand, row_id))
                stop = _send_batch(
                    session,
                    settings,
                    campaign,
                    transport,
                    claimed,
                    marks,
                    suppressed,
                    report,
                    build,
                    progress,
                    window_open=lambda: window is None or force or window.contains(now()),
                )
                if stop:
                    break
        finally:
            if marks:
                with session.begin():
                    _apply_marks(session, marks)
    return report


def _send_batch(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    transport: SmtpTransport | None,
    claimed: list[tuple[Candidate, int]],
    marks: list[_Mark],
    suppressed: set[str],
    report: SendReport,
    build: Callable[[Candidate], Message] | None,
    progress: Callable[[str, Candidate], None] | None,
    *,
    window_open: Callable[[], bool],
) -> bool:
    """Send one claimed batch, appending outcomes to ``marks``; True when the run must stop.

    Claims that were not attempted (SMTP down, window closed, a rendering bug) are given back, so a
    later run sends them; only a message that may have reached the server stays claimed.
    """
    tally = report.tally
    for index, (cand, row_id) in enumerate(claimed):
        unsent = [rid for _, rid in claimed[index:]]
        if not window_open():
            _give_back(session, marks, unsent)
            tally["deferred"] += len(unsent)
            report.stopped = "send window closed; rerun to continue"
            return True
        if transport is None:
            raise ValueError("a transport is needed unless dry_run")
        email = cand.email or ""
        if email_hash(email) in suppressed:  # bounced earlier in this run
            _give_back(session, marks, [row_id])
            tally["suppressed"] += 1
            continue
        try:
            if build is not None:  # the benchmark sends messages it prepared up front
                msg = build(cand)
            else:
                msg = build_appeal(
                    settings, campaign, external_id=cand.external_id, email=email, name=cand.name
                )
            delivery = transport.send(msg)
        except (KeyboardInterrupt, SystemExit):
            # Interrupted while this message was in flight: it stays claimed (it may have gone
            # out), and the rest of the batch, never attempted, is given back for the next run.
            _give_back(session, marks, unsent[1:])
            raise
        except (TransientFailure, MailConfigError) as exc:
            # Nothing reached the server: give the claims back so a later run sends them.
            _give_back(session, marks, unsent)
            tally["deferred"] += len(unsent)
            report.stopped = f"SMTP: {exc}"
            if isinstance(exc, MailConfigError):
                raise
            return True
        except Exception:
            # A bug while rendering (before anything was sent): give the claims back, then fail.
            _give_back(session, marks, unsent)
            raise
        word, mark = _outcome(delivery, row_id, email, msg["Message-ID"])
        if mark.suppress_email:
            suppressed.add(email_hash(email))
        marks.append(mark)
        tally[word] += 1
        if progress is not None:
            progress(word, cand)
    return False


def _give_back(session: Session, marks: list[_Mark], row_ids: list[int]) -> None:
    """Record pending outcomes and release claims that were never attempted, in one commit."""
    with session.begin():
        _apply_marks(session, marks)
        marks.clear()
        for row_id in row_ids:
            _release(session, row_id)


def _release(session: Session, row_id: int) -> None:
    session.execute(delete(_LEDGER).where(_LEDGER.c.id == row_id, _LEDGER.c.state == "claimed"))


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
