"""The SMTP transport and message against a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from paywall.mail.message import build_message
from paywall.mail.smtp import SmtpTransport, TransientFailure
from tests.support.faults import free_port
from tests.support.mail import MAIL_FROM, SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def transport(sink: SmtpSink, **kw: Any) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0, **kw)


def message(
    to: str = "ana@example.org", unsubscribe: str | None = "https://p.example/unsubscribe?token=" + "x" * 300
) -> Message:
    return build_message(
        sender=MAIL_FROM,
        to=to,
        to_name="Ana Müller",
        subject="Help keep us open, ça va",
        text="Hello Ana,\n.leading dot stays\nbye\n",
        html="<p>Hello <b>Ana</b></p>",
        unsubscribe_url=unsubscribe,
    )


def test_multipart_message_with_one_click_headers(sink: SmtpSink) -> None:
    with transport(sink) as t:
        result = t.send(message())
    assert result.status == "sent"
    (got,) = sink.received
    assert got.rcpt_to == ["ana@example.org"]
    assert got.mail_from == "appeals@news.example.org"
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"].endswith("@news.example.org>")
    assert msg["Date"]
    assert msg["Subject"] == "Help keep us open, ça va"
    assert "Ana Müller" in str(msg["To"])
    assert msg["List-Unsubscribe"] == "<https://p.example/unsubscribe?token=" + "x" * 300 + ">"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # One line on the wire: folding the header breaks DKIM in some stacks.
    raw_line = next(line for line in got.raw.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    assert raw_line.endswith(b"x" * 300 + b">")
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain" and ".leading dot stays" in text.get_content()
    assert html.get_content_type() == "text/html" and "<b>Ana</b>" in html.get_content()


def test_transactional_message_has_no_bulk_headers() -> None:
    msg = message(unsubscribe=None)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None


def test_one_connection_for_many_messages(sink: SmtpSink) -> None:
    with transport(sink) as t:
        for i in range(5):
            assert t.send(message(f"r{i}@example.org")).status == "sent"
        assert t.connections_opened == 1
    assert sink.sessions == 1
    assert len(sink.received) == 5


def test_refused_address_is_a_hard_bounce_and_the_connection_goes_on(sink: SmtpSink) -> None:
    sink.refuse.add("gone@example.org")
    with transport(sink) as t:
        refused = t.send(message("gone@example.org"))
        ok = t.send(message("ana@example.org"))
        assert t.connections_opened == 1
    assert refused.status == "refused" and refused.code == 550 and refused.hard_bounce
    assert "5.1.1" in refused.error
    assert ok.status == "sent"
    assert sink.recipients() == ["ana@example.org"]


def test_dropped_connection_is_retried_on_a_new_one(sink: SmtpSink) -> None:
    sink.drop_next_rcpt = True
    with transport(sink) as t:
        assert t.send(message()).status == "sent"
        assert t.connections_opened == 2
    assert sink.recipients() == ["ana@example.org"]


def test_drop_after_the_body_is_unknown_and_not_retried(sink: SmtpSink) -> None:
    sink.drop_after_data_once = True
    with transport(sink) as t:
        result = t.send(message())
        assert result.status == "unknown"
        assert t.send(message("next@example.org")).status == "sent"
    # The server did get the first message: a retry would have been a duplicate.
    assert sink.recipients() == ["ana@example.org", "next@example.org"]


def test_server_down_is_transient_after_backoff() -> None:
    sleeps: list[float] = []
    t = SmtpTransport(
        host="127.0.0.1",
        port=free_port(),
        security="none",
        max_attempts=3,
        backoff_seconds=0.5,
        sleep=sleeps.append,
    )
    with pytest.raises(TransientFailure):
        t.send(message())
    assert sleeps == [0.5, 1.0]


def test_rate_limit_spaces_messages(sink: SmtpSink) -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    t = SmtpTransport(
        host="127.0.0.1",
        port=sink.port,
        security="none",
        rate_per_minute=120,
        sleep=sleep,
        monotonic=lambda: now[0],
    )
    with t:
        for i in range(3):
            t.send(message(f"r{i}@example.org"))
    assert sleeps == [0.5, 0.5]
    assert len(sink.received) == 3
