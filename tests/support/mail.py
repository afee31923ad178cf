"""Mail test helpers: a real SMTP server on loopback (aiosmtpd), settings pointing at it, and
row factories for readers, payments and subscriptions."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from typing import Any, Self

from aiosmtpd.controller import Controller

from paywall import clock
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Payment, Reader, StripeCustomer, Subscription
from tests.support.faults import free_port

MAIL_FROM = "Newsroom <appeals@news.example.org>"


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def body_text(msg: Message, subtype: str = "plain") -> str:
    """The decoded text/``subtype`` body of ``msg`` (a message parsed with the default policy)."""
    assert isinstance(msg, EmailMessage)
    part = msg.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content: str = part.get_content()
    return content


class SmtpSink:
    """An SMTP server on a free loopback port that keeps (or discards) what it accepts.

    ``refuse``: addresses answered ``550 5.1.1`` at RCPT. ``drop_next_rcpt``: close the connection
    at the next RCPT, once. ``hold_at``: before answering the N-th DATA, set ``held`` and wait for
    ``release`` (the message counts as received: a client killed now must not send it again).
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.received: list[Received] = []
        self.count = 0
        self.refuse: set[str] = set()
        self.drop_next_rcpt = False
        self.drop_after_data_once = False
        self.hold_at: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.sessions = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.controller.stop()

    # aiosmtpd handler hooks

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        if self.drop_next_rcpt:
            self.drop_next_rcpt = False
            server.transport.close()
            return "421 4.4.2 connection dropped"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.count += 1
            n = self.count
            if self.keep:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        if self.hold_at is not None and n == self.hold_at:
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        if self.drop_after_data_once:
            self.drop_after_data_once = False
            server.transport.close()
        return "250 2.0.0 Accepted"

    def recipients(self) -> list[str]:
        return [r for m in self.received for r in m.rcpt_to]


def smtp_env(sink: SmtpSink) -> dict[str, str]:
    return {
        "PAYWALL_SMTP_HOST": "127.0.0.1",
        "PAYWALL_SMTP_PORT": str(sink.port),
        "PAYWALL_SMTP_SECURITY": "none",
        "PAYWALL_MAIL_FROM": MAIL_FROM,
    }


def mail_settings(make_settings: Callable[..., Settings], sink: SmtpSink, **mailer: Any) -> Settings:
    """Settings for a test: the sink as relay, no backoff waits."""
    return make_settings(smtp_env(sink), mailer={"backoff_seconds": 0.0, **mailer})


_counter = iter(range(1, 10_000_000))


def add_reader(
    db: Database,
    external_id: str | None = None,
    *,
    email: str | None = "",
    name: str | None = "Ana",
    opt_in: bool = True,
    unsubscribed: bool = False,
    erased: bool = False,
) -> int:
    """A reader row; ``email=""`` means ``<external_id>@example.org``. Returns the row id."""
    ext = external_id or f"r{next(_counter)}"
    with db.transaction() as s:
        reader = Reader(
            external_id=ext,
            email=f"{ext}@example.org" if email == "" else email,
            name=name,
            marketing_opt_in=opt_in,
            unsubscribed_at=clock.now() if unsubscribed else None,
            erased_at=clock.now() if erased else None,
        )
        s.add(reader)
        s.flush()
        return reader.id


def add_payment(
    db: Database,
    *,
    reader_id: int | None = None,
    kind: str = "donation",
    amount: int = 1000,
    currency: str = "eur",
    days_ago: float = 10,
    paid_at: dt.datetime | None = None,
    refunded: int = 0,
    email: str | None = None,
    customer: str | None = None,
    name: str | None = None,
) -> str:
    charge = f"ch_{next(_counter)}"
    with db.transaction() as s:
        s.add(
            Payment(
                stripe_charge_id=charge,
                reader_id=reader_id,
                stripe_customer_id=customer,
                kind=kind,
                amount_minor=amount,
                currency=currency,
                refunded_minor=refunded,
                email=email,
                name=name,
                paid_at=paid_at or clock.now() - dt.timedelta(days=days_ago),
            )
        )
    return charge


def add_subscription(
    db: Database,
    *,
    reader_id: int | None = None,
    status: str = "active",
    kind: str = "subscription",
    customer: str | None = None,
) -> None:
    with db.transaction() as s:
        s.add(
            Subscription(
                stripe_subscription_id=f"sub_{next(_counter)}",
                reader_id=reader_id,
                stripe_customer_id=customer,
                kind=kind,
                status=status,
                ended_at=clock.now() if status == "canceled" else None,
            )
        )


def add_customer(db: Database, reader_id: int) -> str:
    cus = f"cus_{next(_counter)}"
    with db.transaction() as s:
        s.add(StripeCustomer(stripe_customer_id=cus, reader_id=reader_id))
    return cus
