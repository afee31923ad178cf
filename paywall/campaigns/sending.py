"""Sending a campaign, each (campaign, reader) at most once.

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

An appeal mail is an ask (paywall/campaigns/asking.py): readers at the ask budget
(``over_budget``), below ``min_articles`` (``too_new``) or in the holdback of the campaign's
experiment (``holdback``) are not mailed; a message that went out records its ask with its mark.

Only a transient failure that provably sent nothing (every attempt refused with 4xx, or the
connection failed before the body) releases the claim by itself, and stops the run.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from sqlalchemy.orm import Session

from paywall import clock
from paywall.campaigns import ledger
from paywall.campaigns.asking import AskPlan, plan_asks, record_holdback
from paywall.campaigns.definition import Campaign
from paywall.campaigns.message import build_appeal
from paywall.campaigns.selection import Candidate, candidates
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import Ask, encode_ask
from paywall.mail.settings import appeal_pause_days, mailer_settings
from paywall.mail.smtp import Delivery, MailConfigError, SmtpTransport, TransientFailure
from paywall.mail.suppression import email_hash, suppressed_hashes


class OutsideWindow(Exception):
    """The campaign's send window is closed (use --force to send anyway)."""


@dataclass
class SendReport:
    """What a run did: a tally of outcomes, who would get it (dry run), and why it stopped early."""

    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    would_send: list[Candidate] = field(default_factory=list)
    stopped: str | None = None


def send_campaign(
    db: Database,
    settings: Settings,
    campaign: Campaign,
    transport: SmtpTransport | None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    now: Callable[[], dt.datetime] = clock.now,
    progress: Callable[[str, Candidate], None] | None = None,
    build: Callable[[Candidate], Message] | None = None,
) -> SendReport:
    """Send ``campaign`` to its segment once per reader; returns the tally (see the module doc)."""
    closed = _window_closed(campaign, force, now)
    if closed is not None:
        raise OutsideWindow(f"{campaign.name}: outside its send window {closed}")
    with db.transaction(readonly=True) as session:
        people = list(
            candidates(session, campaign.segment, now=now(), pause_days=appeal_pause_days(settings))
        )
        sent_before = ledger.states(session, campaign.name)
        plan = plan_asks(session, settings, campaign.name, people, now())
    if not dry_run and transport is None:
        raise ValueError("a transport is needed unless dry_run")
    report = SendReport()
    batch_size = max(1, mailer_settings(settings).claim_batch)
    # One connection for the whole run (a transaction per batch of claims on it): opening a
    # connection per transaction cost more than the SMTP exchange itself.
    with db.engine.connect() as conn, Session(bind=conn, expire_on_commit=False) as session:
        with session.begin():
            suppressed = suppressed_hashes(session)
        eligible = _sift(people, sent_before, suppressed, report, plan, limit=limit, dry_run=dry_run)
        if not eligible:
            return report
        if transport is None:  # checked above; keeps the type checker informed
            raise ValueError("a transport is needed unless dry_run")
        run = Send(
            session,
            settings,
            campaign,
            transport,
            report,
            suppressed,
            plan,
            force=force,
            now=now,
            build=build,
            progress=progress,
        )
        run.send_all(eligible, batch_size=batch_size)
    return report


def _window_closed(campaign: Campaign, force: bool, now: Callable[[], dt.datetime]) -> str | None:
    """The send window, described, when it is closed now; None when open, absent or forced."""
    window = campaign.window
    if window is None or force or window.contains(now()):
        return None
    return window.describe()


def _sift(
    people: list[Candidate],
    sent_before: dict[int, str],
    suppressed: set[str],
    report: SendReport,
    plan: AskPlan,
    *,
    limit: int | None,
    dry_run: bool,
) -> list[Candidate]:
    """The candidates to claim, in order; every other one is counted in the tally under its reason.

    Readers in the holdback are claimed too (to be recorded, never mailed; not counted in ``limit``).
    In a dry run nobody is returned: who would get it goes to ``report.would_send``.
    """
    tally = report.tally
    eligible: list[Candidate] = []
    attempted = 0
    for cand in people:
        if cand.excluded:
            tally[cand.excluded] += 1
        elif cand.reader_id in sent_before:
            tally[ledger.EXISTING.get(sent_before[cand.reader_id], "claimed")] += 1
        elif email_hash(cand.email or "") in suppressed:
            tally["suppressed"] += 1
        elif skip := plan.skip(cand):
            tally[skip] += 1
        elif plan.arm(cand).holdback:
            if dry_run:
                tally["holdback"] += 1
            else:
                eligible.append(cand)
        elif limit is not None and attempted >= limit:
            tally["over_limit"] += 1
        else:
            attempted += 1
            if dry_run:
                tally["would_send"] += 1
                report.would_send.append(cand)
            else:
                eligible.append(cand)
    return eligible


@dataclass
class Send:
    """One run of a campaign on one session: what it sends with, and what it has done so far.

    ``marks`` holds outcomes not yet recorded: they ride in the next transaction this run opens.
    """

    session: Session
    settings: Settings
    campaign: Campaign
    transport: SmtpTransport
    report: SendReport
    # Hashes of the suppressed addresses, grown by this run's hard bounces.
    suppressed: set[str]
    # The ask budget, min_articles and the experiment (paywall/campaigns/asking.py).
    plan: AskPlan
    force: bool = False
    now: Callable[[], dt.datetime] = clock.now
    # The benchmark sends messages it prepared up front.
    build: Callable[[Candidate], Message] | None = None
    progress: Callable[[str, Candidate], None] | None = None
    marks: list[ledger.Mark] = field(default_factory=list)

    def send_all(self, eligible: list[Candidate], *, batch_size: int) -> None:
        """Claim and send ``eligible`` batch by batch until done, the window closes or SMTP fails."""
        try:
            for start in range(0, len(eligible), batch_size):
                closed = _window_closed(self.campaign, self.force, self.now)
                if closed is not None:
                    self.report.stopped = f"send window closed ({closed}); rerun to continue"
                    break
                if self.send_batch(self.claim(eligible[start : start + batch_size])):
                    break
        finally:
            if self.marks:
                with self.session.begin():
                    ledger.apply_marks(self.session, self.marks, self.now())

    def claim(self, batch: list[Candidate]) -> list[tuple[Candidate, int]]:
        """Claim a batch in one committed transaction (one durable commit per batch, not per
        message), recording the previous batch's outcomes in the same commit."""
        claimed: list[tuple[Candidate, int]] = []
        with self.session.begin():
            ledger.apply_marks(self.session, self.marks, self.now())
            for cand in batch:
                row_id = ledger.claim(self.session, self.campaign.name, cand)
                if row_id is None:
                    self.report.tally[ledger.why_not(self.session, self.campaign.name, cand.reader_id)] += 1
                elif (arm := self.plan.arm(cand)).holdback:
                    # Recorded once, with its view, in the claim's own commit; never mailed.
                    ledger.hold(self.session, row_id)
                    record_holdback(self.session, self.plan.asked(cand, arm), self.now())
                    self.report.tally["holdback"] += 1
                else:
                    claimed.append((cand, row_id))
        return claimed

    def send_batch(self, claimed: list[tuple[Candidate, int]]) -> bool:
        """Send one claimed batch, keeping outcomes in ``marks``; True when the run must stop.

        Claims that were not attempted (SMTP down, window closed, a rendering bug) are given back, so a
        later run sends them; only a message that may have reached the server stays claimed.
        """
        tally = self.report.tally
        for index, (cand, row_id) in enumerate(claimed):
            unsent = [rid for _, rid in claimed[index:]]
            if _window_closed(self.campaign, self.force, self.now) is not None:
                self.give_back(unsent)
                tally["deferred"] += len(unsent)
                self.report.stopped = "send window closed; rerun to continue"
                return True
            email = cand.email or ""
            if email_hash(email) in self.suppressed:  # bounced earlier in this run
                self.give_back([row_id])
                tally["suppressed"] += 1
                continue
            sent = self.send_one(cand, email, unsent)
            if sent is None:
                return True
            msg, delivery = sent
            word, mark = ledger.outcome(delivery, row_id, email, msg["Message-ID"])
            mark.asked = self.plan.asked(cand, self.plan.arm(cand))
            if mark.suppress_email:
                self.suppressed.add(email_hash(email))
            self.marks.append(mark)
            tally[word] += 1
            if self.progress is not None:
                self.progress(word, cand)
        return False

    def send_one(self, cand: Candidate, email: str, unsent: list[int]) -> tuple[Message, Delivery] | None:
        """Build and send one claimed reader's message; None when SMTP failed and the run must stop.

        ``unsent`` is this reader's row and the batch's rows after it: given back when nothing of
        them can have reached the server.
        """
        try:
            if self.build is not None:
                msg = self.build(cand)
            else:
                arm = self.plan.arm(cand)
                ask = Ask(self.campaign.name, arm.name, arm.variant, cand.external_id, self.now())
                msg = build_appeal(
                    self.settings,
                    self.campaign,
                    external_id=cand.external_id,
                    email=email,
                    name=cand.name,
                    copy=arm.copy(),
                    ask=encode_ask(self.settings, ask),
                )
            return msg, self.transport.send(msg)
        except (KeyboardInterrupt, SystemExit):
            # Interrupted while this message was in flight: it stays claimed (it may have gone
            # out), and the rest of the batch, never attempted, is given back for the next run.
            self.give_back(unsent[1:])
            raise
        except (TransientFailure, MailConfigError) as exc:
            # Nothing reached the server: give the claims back so a later run sends them.
            self.give_back(unsent)
            self.report.tally["deferred"] += len(unsent)
            self.report.stopped = f"SMTP: {exc}"
            if isinstance(exc, MailConfigError):
                raise
            return None
        except Exception:
            # A bug while rendering (before anything was sent): give the claims back, then fail.
            self.give_back(unsent)
            raise

    def give_back(self, row_ids: list[int]) -> None:
        """Record pending outcomes and release claims that were never attempted, in one commit."""
        with self.session.begin():
            ledger.apply_marks(self.session, self.marks, self.now())
            ledger.release_unattempted(self.session, row_ids)
