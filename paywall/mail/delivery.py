"""Draining the outbox: supporter mail the Stripe sync queued (receipts, failed payments, trials).

Each message is claimed (``pending`` -> ``sending``) in its own committed transaction before it is
sent, and marked ``sent``, ``failed`` or ``skipped`` after. Claiming uses ``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several workers never wait on or take the same row, and a conditional UPDATE
(``… WHERE status = 'pending'``) on SQLite, where writers are serialised anyway. A row left in
``sending`` (a crash between claim and mark, or a connection lost after the body went out) is not
sent again: at most once. ``paywall mail retry ID`` puts one back when an operator knows it did not
go out.

Data each kind reads (written by paywall/webhooks/sync.py): see the templates in mail/templates/.

Sign-in mail (``signin_code``, ``delete_code``, queued by paywall/signin/service.py) is different:
a reader is waiting for it, so it is claimed before any other due mail; its code and link wait
sealed (paywall/signin/sealing.py) and are opened only to render the message; the sealed value is
blanked once the message is sent, failed or skipped; and a code that expired while it waited is
skipped (``skipped_expired``), never sent late.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Protocol

import jinja2
from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from paywall import clock, money
from paywall.config import Settings
from paywall.db import Database
from paywall.mail.links import account_url, reader_link
from paywall.mail.message import build_message
from paywall.mail.queue import refresh_before_send
from paywall.mail.settings import mailer_settings
from paywall.mail.smtp import Delivery, MailConfigError, TransientFailure
from paywall.mail.suppression import is_suppressed, suppress
from paywall.models import OutboxMessage, Reader
from paywall.signin.sealing import unseal

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SUBJECTS = {
    "donation_receipt": "Thank you for your donation: your receipt",
    "payment_failed": "Your payment did not go through",
    "trial_ending": "Your trial ends soon",
    "yearly_receipt": "Your donations in {year}",
    # No code in the subject: subjects show on lock screens, watches and shared screens, and the
    # code signs in whoever reads it for 15 minutes (the body shows it after a first line).
    "signin_code": "Sign in to {organisation}",
    "delete_code": "Confirm deleting your account with {organisation}",
}
# Kinds whose data carries a sealed secret (the code, the link) and that expire.
SEALED_KINDS = ("signin_code", "delete_code")
# The From address of mail written to files on a laptop with no PAYWALL_MAIL_FROM (paywall/mail/files.py).
DEV_SENDER = "paywall <paywall@localhost>"


class Transport(Protocol):
    """What drains send through: SmtpTransport, or FileTransport on a laptop."""

    def send(self, msg: Message, *, envelope_from: str | None = None) -> Delivery: ...

    def close(self) -> None: ...


def _date(value: Any) -> str:
    """An ISO timestamp (or datetime) as '27 November 2026' (UTC)."""
    when: dt.datetime | None = value if isinstance(value, dt.datetime) else None
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if when is None:
        return ""
    return f"{when.astimezone(dt.UTC):%d %B %Y}".lstrip("0")


def _money(amount_minor: Any, currency: Any) -> str:
    if isinstance(amount_minor, int) and isinstance(currency, str) and currency:
        return money.display(amount_minor, currency)
    return ""


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    keep_trailing_newline=True,
)
_env.filters["date"] = _date
_env.globals["money"] = _money


def render_supporter_mail(kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) for a supporter-mail kind."""
    if kind not in SUBJECTS:
        raise ValueError(f"unknown mail kind {kind!r}")
    subject = SUBJECTS[kind].format(**{k: v for k, v in context.items() if isinstance(v, str | int)})
    text = _env.get_template(f"{kind}.txt").render(context)
    html = _env.get_template(f"{kind}.html").render(context)
    return subject, text, html


def supporter_context(
    settings: Settings, kind: str, data: dict[str, Any], reader_external_id: str | None
) -> dict[str, Any]:
    """Template variables: the queued data, the organisation, the account page, and a personal donate link."""
    context: dict[str, Any] = {
        **data,
        "organisation": mailer_settings(settings).organisation,
        "amount": _money(data.get("amount_minor"), data.get("currency")),
    }
    # The account page, not a personal link: billing opens only after signing in there (a mail
    # can be forwarded), and a guest who paid can sign in with this same address.
    context["account_url"] = account_url(settings)
    if reader_external_id and kind == "donation_receipt":
        context["donate_url"] = reader_link(settings, reader_external_id, "donate")
    return context


def build_supporter_message(
    settings: Settings,
    kind: str,
    *,
    to: str,
    name: str | None,
    data: dict[str, Any],
    reader_external_id: str | None,
) -> Message:
    """A transactional message: no List-Unsubscribe (it is not bulk mail; unsubscribing from appeals
    does not stop receipts)."""
    context = supporter_context(settings, kind, data, reader_external_id)
    context.setdefault("name", name)
    subject, text, html = render_supporter_mail(kind, context)
    return build_message(
        sender=settings.mail.mail_from or DEV_SENDER,
        to=to,
        to_name=name,
        subject=subject,
        text=text,
        html=html,
    )


@dataclass
class _Job:
    id: int
    kind: str
    to_email: str
    name: str | None
    reader_external_id: str | None
    data: dict[str, Any]
    attempts: int
    # A sign-in message's data as queued (sealed): restored only if it goes back to pending.
    requeue_data: dict[str, Any] | None = None


def _claim_id(session: Session, now: dt.datetime) -> int | None:
    # Sign-in mail first: a reader is waiting for the code, while a receipt can wait a minute.
    urgent = case((OutboxMessage.kind.in_(SEALED_KINDS), 0), else_=1)
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == "pending", OutboxMessage.due_at <= now)
        .order_by(urgent, OutboxMessage.due_at, OutboxMessage.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        found = session.scalar(due.limit(1).with_for_update(skip_locked=True))
        ids = [found] if found is not None else []
    else:
        ids = list(session.scalars(due.limit(5)))
    for candidate in ids:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == candidate, OutboxMessage.status == "pending")
            .values(status="sending", claimed_at=now, attempts=OutboxMessage.attempts + 1)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return candidate
    return None


def blank_sealed(data: dict[str, Any] | None) -> dict[str, Any]:
    """The message's data with its sealed secret removed (what stays in the table once handled)."""
    return {**(data or {}), "sealed": None}


def _open_sealed(
    settings: Settings, msg: OutboxMessage, address: str, now: dt.datetime
) -> tuple[dict[str, Any] | None, str | None]:
    """(the unsealed secret, None) of a sign-in message, or (None, skip reason)."""
    data = msg.data or {}
    try:
        expires = dt.datetime.fromisoformat(str(data.get("expires_at")).replace("Z", "+00:00"))
    except ValueError:
        return None, "expired"
    if now >= expires:
        return None, "expired"  # the code no longer works: sending it late would only confuse
    sealed = data.get("sealed")
    secret = unseal(settings, msg.kind, address, sealed) if isinstance(sealed, str) else None
    return (secret, None) if secret is not None else (None, "unsealable")


def _claim(session: Session, settings: Settings, now: dt.datetime) -> tuple[_Job | None, str | None, bool]:
    """Claim the next due message: (job, skip reason, found). A skipped one is marked here."""
    msg_id = _claim_id(session, now)
    if msg_id is None:
        return None, None, False
    msg = session.get(OutboxMessage, msg_id, populate_existing=True)
    if msg is None:  # claimed in this very transaction
        raise LookupError(msg_id)
    refresh_before_send(session, msg)
    reader = session.get(Reader, msg.reader_id) if msg.reader_id is not None else None
    address = msg.to_email or (reader.email if reader is not None else None)
    reason = None
    if reader is not None and reader.erased_at is not None:
        reason = "erased"
    elif not address or "@" not in address:
        reason = "no_email"
    elif is_suppressed(session, address):
        reason = "suppressed"
    secret: dict[str, Any] | None = None
    if reason is None and address is not None and msg.kind in SEALED_KINDS:
        secret, reason = _open_sealed(settings, msg, address, now)
    if reason is not None:
        msg.status = "skipped"
        msg.error = reason
        if msg.kind in SEALED_KINDS:
            msg.data = blank_sealed(msg.data)
        return None, reason, True
    if address is None:  # excluded above as no_email
        raise LookupError(msg_id)
    data = {**(msg.data or {}), **(secret or {})}
    requeue = None
    if msg.kind in SEALED_KINDS:
        # Blanked as it is claimed: from here on the secret lives only in this worker's memory.
        requeue, msg.data = dict(msg.data or {}), blank_sealed(msg.data)
    name = data.get("name") or (reader.name if reader is not None else None)
    external = data.get("reader") or (reader.external_id if reader is not None else None)
    job = _Job(msg.id, msg.kind, address, name, external, data, msg.attempts, requeue_data=requeue)
    return job, None, True


def _mark(session: Session, job_id: int, **values: Any) -> None:
    session.execute(update(OutboxMessage).where(OutboxMessage.id == job_id).values(**values))


def drain(
    db: Database,
    settings: Settings,
    transport: Transport,
    *,
    limit: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> collections.Counter[str]:
    """Send every due pending message once; returns a tally (sent, failed, skipped_*, unknown, deferred)."""
    tally: collections.Counter[str] = collections.Counter()
    ms = mailer_settings(settings)
    pending_mark: tuple[int, dict[str, Any], str | None] | None = None
    processed = 0

    def flush(session: Session) -> None:
        nonlocal pending_mark
        if pending_mark is not None:
            job_id, values, bounce = pending_mark
            _mark(session, job_id, **values)
            if bounce:
                suppress(session, bounce, reason="hard_bounce", detail=values.get("error"))
            pending_mark = None

    try:
        while not should_stop() and (limit is None or processed < limit):
            with db.transaction() as session:
                flush(session)
                job, skipped, found = _claim(session, settings, clock.now())
            if not found:
                break
            processed += 1
            if job is None:
                tally[f"skipped_{skipped}"] += 1
                continue
            try:
                msg = build_supporter_message(
                    settings,
                    job.kind,
                    to=job.to_email,
                    name=job.name,
                    data=job.data,
                    reader_external_id=job.reader_external_id,
                )
            except (ValueError, jinja2.TemplateError) as exc:
                pending_mark = (job.id, {"status": "failed", "error": f"render: {exc}"}, None)
                tally["failed"] += 1
                continue
            try:
                delivery = transport.send(msg)
            except (TransientFailure, MailConfigError) as exc:
                # Nothing reached the server: back to pending, later; stop until the server is back.
                values: dict[str, Any] = {"status": "pending", "error": str(exc)[:500]}
                delay = ms.outbox_retry_seconds * 2 ** max(0, job.attempts - 1)
                values["due_at"] = clock.now() + dt.timedelta(seconds=delay)
                if job.requeue_data is not None:
                    values["data"] = job.requeue_data  # back in the queue, sealed as it came
                if job.attempts >= ms.outbox_max_attempts:
                    values = {"status": "failed", "error": f"gave up after {job.attempts} attempts: {exc}"}
                with db.transaction() as session:
                    _mark(session, job.id, **values)
                tally["deferred"] += 1
                if isinstance(exc, MailConfigError):
                    raise
                break
            if delivery.status == "sent":
                pending_mark = (
                    job.id,
                    {
                        "status": "sent",
                        "sent_at": clock.now(),
                        "message_id": msg["Message-ID"],
                        "error": None,
                    },
                    None,
                )
            elif delivery.status == "unknown":
                # Left in "sending": it may have been delivered, so it is not sent again.
                pending_mark = (
                    job.id,
                    {"message_id": msg["Message-ID"], "error": f"outcome unknown: {delivery.error}"},
                    None,
                )
            else:
                bounce = job.to_email if delivery.hard_bounce else None
                pending_mark = (job.id, {"status": "failed", "error": delivery.error[:500]}, bounce)
            tally[delivery.status if delivery.status != "refused" else "failed"] += 1
    finally:
        if pending_mark is not None:
            with db.transaction() as session:
                flush(session)
    return tally


def retry(session: Session, message_id: int) -> str:
    """Put a failed or stuck ('sending') message back to pending: 'queued', 'not_found' or its status."""
    msg = session.get(OutboxMessage, message_id)
    if msg is None:
        return "not_found"
    if msg.status not in ("failed", "sending"):
        return msg.status
    msg.status = "pending"
    msg.due_at = clock.now()
    msg.error = None
    return "queued"


def status_counts(session: Session) -> dict[str, int]:
    """Outbox rows per status."""
    from sqlalchemy import func

    rows = session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
    return {status: int(n) for status, n in rows}


def urgent_pending(session: Session, now: dt.datetime) -> bool:
    """Whether a sign-in message is due: the worker checks this every second between drains."""
    due = select(OutboxMessage.id).where(
        OutboxMessage.status == "pending", OutboxMessage.due_at <= now, OutboxMessage.kind.in_(SEALED_KINDS)
    )
    return session.scalar(due.limit(1)) is not None
