"""Nothing personal or secret reaches the logs: run the Stripe scenarios, readers, access checks,
tokens and a failing mail drain with every paywall logger at DEBUG, then search what was logged."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient

from paywall.config import Settings
from paywall.db import Database
from paywall.mail import delivery
from paywall.mail.smtp import SmtpTransport
from paywall.observability import configure_logging, redact
from tests.conftest import FIXTURES, WEBHOOK_SECRET
from tests.support.faults import free_port
from tests.support.stripe_events import BASES, deliver_all, load_scenario

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    configure_logging("DEBUG", json_logs=True)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_paywall", False))
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(old)
        logging.getLogger("paywall").setLevel(logging.INFO)


def test_logs_hold_no_emails_keys_tokens_or_secrets(
    client: FlaskClient,
    db: Database,
    make_settings: Callable[..., Settings],
    make_key: Callable[[str], dict[str, str]],
    captured_logs: io.StringIO,
) -> None:
    site = make_key("site")
    admin = make_key("admin")
    secrets = [site["Authorization"].split()[1], admin["Authorization"].split()[1], WEBHOOK_SECRET]
    emails = set()
    for path in (FIXTURES / "scenarios").glob("*.json"):
        emails |= set(EMAIL.findall(path.read_text()))
    emails |= {"ana.reader@example.org", "bob.reader@example.org"}

    for reader, email in (("ana", "ana.reader@example.org"), ("bob", "bob.reader@example.org")):
        assert (
            client.put(f"/v1/readers/{reader}", json={"email": email, "name": "N"}, headers=site).status_code
            == 201
        )
    for scenario in [
        "monthly_subscription_checkout",
        "one_time_donation_checkout",
        "renewal_failed_then_recovered",
        "cancel_at_period_end_then_deleted",
        "donation_refund",
        "dispute_lost",
        "upgrade_with_proration",
        "annual_trial_eur",
    ]:
        base = BASES.get(scenario)
        events = (load_scenario(base) if base else []) + load_scenario(scenario)
        deliver_all(client, events)
        # A bad signature and a body that is not an event are logged as rejected, not echoed.
        client.post(
            "/webhooks/stripe", data=b'{"email": "x@y.org"}', headers={"Stripe-Signature": "t=1,v1=00"}
        )
    for reader in ("ana", "member_8731", "anon-cookie-1"):
        client.post("/v1/access", json={"reader": reader, "article": "a-1", "explain": True}, headers=site)
        token = client.post("/v1/access/token", json={"reader": reader}, headers=site).get_json()["token"]
        secrets.append(token)
    client.delete("/v1/readers/bob", headers=admin)

    # The outbox holds receipts and notices for the scenario donors; the SMTP port is closed.
    settings = make_settings(
        {
            "PAYWALL_SMTP_HOST": "127.0.0.1",
            "PAYWALL_SMTP_PORT": str(free_port()),
            "PAYWALL_MAIL_FROM": "news@example.org",
        }
    )
    transport = SmtpTransport(
        host="127.0.0.1", port=settings.mail.smtp_port, security="none", max_attempts=2, sleep=lambda _s: None
    )
    delivery.drain(db, settings, transport, limit=3)

    text = captured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) >= 3, text  # the run did log (rejections, mail failures)
    for email in emails:
        assert email not in text, f"email address in the logs: {email}"
    for secret in secrets:
        assert secret not in text, "a key, token or secret reached the logs"
    assert "Maria Lopez" not in text and "Sam Okafor" not in text


def test_redaction_is_the_last_line_of_defence() -> None:
    line = redact("550 <someone@example.com> rejected; Bearer pw_0123456789abcdef_s3cr3t; whsec_abc")
    assert "@" not in line and "s3cr3t" not in line and "whsec_abc" not in line
