"""Sending a campaign: the message, once per reader across reruns, crashes and concurrent senders."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from paywall import signing
from paywall.campaigns.definition import Campaign, load_campaign
from paywall.campaigns.sending import send_campaign
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.mail.smtp import Delivery, SmtpTransport
from paywall.mail.suppression import is_suppressed
from paywall.models import AppealSend
from tests.conftest import SIGNING_KEY
from tests.support.mail import SmtpSink, add_payment, add_reader, body_text, mail_settings, smtp_env


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def msettings(make_settings: Callable[..., Settings], sink: SmtpSink) -> Settings:
    return mail_settings(make_settings, sink)


@pytest.fixture
def campaign(msettings: Settings) -> Campaign:
    return load_campaign(msettings, "keep-us-open", environ={})


def transport(sink: SmtpSink) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0)


def send(db: Database, settings: Settings, campaign: Campaign, sink: SmtpSink, **kw: Any) -> Counter[str]:
    with transport(sink) as t:
        return send_campaign(db, settings, campaign, t, force=True, **kw).tally


def cli_env(sink: SmtpSink, **extra: str) -> dict[str, str]:
    return {
        **smtp_env(sink),
        "PAYWALL_SIGNING_KEY": SIGNING_KEY,
        "PAYWALL_PUBLIC_URL": "https://pay.example.org",
        **extra,
    }


def token_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["token"][0]


def test_message_to_each_reader_once_and_a_rerun_sends_nothing(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink
) -> None:
    add_reader(db, "r-1", name="Ana <& Co>")
    add_reader(db, "r-2", name=None)
    add_reader(db, "r-3")
    add_reader(db, "r-unsub", unsubscribed=True)
    donor = add_reader(db, "r-donor")
    add_payment(db, reader_id=donor)

    tally = send(db, msettings, campaign, sink)
    assert tally == Counter(sent=3, unsubscribed=1)
    assert sorted(sink.recipients()) == ["r-1@example.org", "r-2@example.org", "r-3@example.org"]

    msg = next(m.message for m in sink.received if m.rcpt_to == ["r-1@example.org"])
    assert msg["Subject"] == "Help keep us open"
    assert msg["From"] == "Newsroom <appeals@news.example.org>"
    assert msg["X-Campaign"] == "keep-us-open"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("https://paywall.example.org/unsubscribe?token=")
    claims = signing.verify(msettings, token_of(unsubscribe), purpose="unsubscribe")
    assert claims["sub"] == "r-1" and claims["cmp"] == "keep-us-open"
    assert isinstance(msg, EmailMessage)
    text_part, html_part = msg.iter_parts()
    text, html = text_part.get_content(), html_part.get_content()
    assert "Dear Ana <& Co>," in text  # text is not escaped
    assert "Dear Ana &lt;&amp; Co&gt;," in html  # HTML is
    assert "support us with your donations or" in text
    assert unsubscribe in text and unsubscribe.replace("&", "&amp;") in html
    for page in ("subscribe", "donate"):
        line = next(w for w in text.split() if w.startswith(f"https://paywall.example.org/{page}?token="))
        link = signing.verify(msettings, token_of(line), purpose="reader-link")
        assert link["sub"] == "r-1"
        assert dt.timedelta(days=29) < dt.datetime.fromtimestamp(link["exp"], dt.UTC) - dt.datetime.now(
            dt.UTC
        )
    plain = next(m.message for m in sink.received if m.rcpt_to == ["r-2@example.org"])
    assert "Dear reader," in body_text(plain)

    again = send(db, msettings, campaign, sink)
    assert again == Counter(already_sent=3, unsubscribed=1)
    assert len(sink.received) == 3


def test_refused_address_is_failed_and_suppressed_and_a_dropped_connection_retried(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink
) -> None:
    for name in ("a", "b", "gone", "d"):
        add_reader(db, name)
    sink.refuse.add("gone@example.org")
    sink.drop_next_rcpt = True  # the very first message meets a dropped connection, then goes through
    tally = send(db, msettings, campaign, sink)
    assert tally == Counter(sent=3, failed=1)
    assert sorted(sink.recipients()) == ["a@example.org", "b@example.org", "d@example.org"]
    with db.transaction(readonly=True) as s:
        row = s.scalars(select(AppealSend).where(AppealSend.state == "failed")).one()
        assert row.error is not None and row.error.startswith("550")
        assert is_suppressed(s, "gone@example.org")
    # The bounced address is out of every later campaign.
    assert send(db, msettings, campaign, sink) == Counter(already_sent=3, suppressed=1)


class DyingTransport(SmtpTransport):
    """Sends ``survive`` messages, then dies inside the next send as if the process were killed."""

    def __init__(self, sink: SmtpSink, survive: int) -> None:
        super().__init__(host="127.0.0.1", port=sink.port, security="none")
        self.survive = survive

    def send(self, msg: Message, *, envelope_from: str | None = None) -> Delivery:
        if self.survive == 0:
            super().send(msg)  # the message went out...
            raise SystemExit(137)  # ...and the process died before recording it
        self.survive -= 1
        return super().send(msg)


def test_crash_after_sending_then_rerun_sends_no_duplicate(
    db: Database, make_settings: Callable[..., Settings], campaign: Campaign, sink: SmtpSink
) -> None:
    """Claim per message (claim_batch = 1): only the message in flight stays claimed."""
    msettings = mail_settings(make_settings, sink, claim_batch=1)
    for i in range(6):
        add_reader(db, f"c{i}")
    with pytest.raises(SystemExit), DyingTransport(sink, survive=2) as dying:
        send_campaign(db, msettings, campaign, dying, force=True)
    assert len(sink.received) == 3
    tally = send(db, msettings, campaign, sink)
    # c0, c1 were recorded as sent; c2 was claimed and never marked: not resent (at most once).
    assert tally == Counter(sent=3, already_sent=2, claimed=1)
    assert sorted(Counter(sink.recipients()).values()) == [1] * 6


def test_crash_with_batched_claims_leaves_at_most_a_batch_claimed(
    db: Database, make_settings: Callable[..., Settings], campaign: Campaign, sink: SmtpSink
) -> None:
    """Batched claims (the default): an interrupted sender leaves only the message in flight claimed."""
    msettings = mail_settings(make_settings, sink, claim_batch=4)
    for i in range(10):
        add_reader(db, f"b{i}")
    with pytest.raises(SystemExit), DyingTransport(sink, survive=5) as dying:
        send_campaign(db, msettings, campaign, dying, force=True)
    assert len(sink.received) == 6  # batch 1 (4 sent), batch 2: 2 sent, the 6th in flight
    tally = send(db, msettings, campaign, sink)
    # Only the message in flight stays claimed; the batch's unattempted claims were given back
    # on the way out, and the outcomes of the sent ones were recorded.
    assert tally == Counter(already_sent=5, claimed=1, sent=4)
    assert sorted(Counter(sink.recipients()).values()) == [1] * 10


@pytest.mark.slow
def test_sender_killed_mid_run_and_restarted(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink, migrated: str
) -> None:
    for i in range(8):
        add_reader(db, f"k{i}")
    sink.hold_at = 4  # the server receives the 4th message and holds its reply
    # Claim per message, so exactly the message in flight is left claimed.
    env = {
        **os.environ,
        **cli_env(sink),
        "PAYWALL_DATABASE_URL": migrated,
        "PAYWALL__MAILER__CLAIM_BATCH": "1",
    }
    env.pop("PAYWALL_CONFIG", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from paywall.cli import main; main()",
            "appeals",
            "send",
            "keep-us-open",
            "--force",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        while not sink.held.wait(0.1):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sink.release.set()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert len(sink.received) == 4
    tally = send(db, msettings, campaign, sink)
    assert tally["sent"] == 4 and tally["claimed"] + tally["already_sent"] == 4
    assert tally["claimed"] >= 1  # the message in flight when the sender died
    assert sorted(Counter(sink.recipients()).values()) == [1] * 8


def test_two_concurrent_senders_send_each_message_once(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink
) -> None:
    for i in range(40):
        add_reader(db, f"p{i}")
    tallies: list[Counter[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            tallies.append(send(db, msettings, campaign, sink))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sorted(Counter(sink.recipients()).values()) == [1] * 40
    assert sum(t["sent"] for t in tallies) == 40
    # Whatever one sender did not send, it saw as done or in flight by the other.
    for t in tallies:
        assert t["sent"] + t["already_sent"] + t["claimed"] == 40


def write_campaign(root: Path, name: str, extra: str = "", segment: str = "all_opted_in") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "campaign.toml").write_text(
        f'segment = "{segment}"\nsubject = "Hi {{{{ reader_name }}}}"\n{extra}'
    )
    (folder / "body.txt").write_text("Hello {{ reader_name }} {{ donate_url }} {{ unsubscribe_url }}\n")
    (folder / "body.html").write_text("<p>Hello {{ reader_name }}</p>")
    return folder


def test_cli_dry_run_limit_window_and_tally(
    db: Database, runner: CliRunner, sink: SmtpSink, tmp_path: Path
) -> None:
    for i in range(3):
        add_reader(db, f"d{i}")
    write_campaign(
        tmp_path, "closed", '[window]\nstart = "09:00"\nend = "17:00"\ntimezone = "Europe/Paris"\ndays = []\n'
    )
    env = cli_env(sink, PAYWALL_APPEALS_DIR=str(tmp_path))

    listed = runner.invoke(main, ["appeals", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert (
        "keep-us-open\tsegment=never_supported" in listed.output
        and "closed\tsegment=all_opted_in" in listed.output
    )

    dry = runner.invoke(main, ["appeals", "send", "keep-us-open", "--dry-run", "--force"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would send to reader d0" in dry.output and "would_send: 3" in dry.output
    assert sink.received == []

    refused = runner.invoke(main, ["appeals", "send", "closed"], env=env)
    assert (
        refused.exit_code == 1 and "outside its send window" in refused.output and "--force" in refused.output
    )
    assert sink.received == []

    first = runner.invoke(main, ["appeals", "send", "closed", "--force", "--limit", "2"], env=env)
    assert first.exit_code == 0, first.output
    assert "sent: 2" in first.output and "over_limit: 1" in first.output
    second = runner.invoke(main, ["appeals", "send", "closed", "--force"], env=env)
    assert "sent: 1" in second.output and "already_sent: 2" in second.output
    assert len(sink.received) == 3
    assert sink.received[0].message["Subject"] == "Hi Ana"


def test_cli_preview_prints_both_parts(db: Database, runner: CliRunner, sink: SmtpSink) -> None:
    add_reader(db, "pv", name="Ana")
    out = runner.invoke(main, ["appeals", "preview", "keep-us-open", "--reader", "pv"], env=cli_env(sink))
    assert out.exit_code == 0, out.output
    assert "List-Unsubscribe: <https://pay.example.org/unsubscribe?token=" in out.output
    assert "--- text/plain ---" in out.output and "--- text/html ---" in out.output
    assert "Dear Ana," in out.output
    assert sink.received == []
    missing = runner.invoke(
        main, ["appeals", "preview", "keep-us-open", "--reader", "nobody"], env=cli_env(sink)
    )
    assert missing.exit_code == 1 and "no reader 'nobody'" in missing.output


def test_commands_say_which_variable_is_missing(
    db: Database, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PAYWALL_SMTP_HOST", "PAYWALL_MAIL_FROM"):
        monkeypatch.delenv(var, raising=False)
    # https: a public service never falls back to writing mail to files (paywall/mail/files.py).
    env = {"PAYWALL_SIGNING_KEY": SIGNING_KEY, "PAYWALL_PUBLIC_URL": "https://paywall.example.org"}
    for args in (
        ["appeals", "send", "keep-us-open"],
        ["mail", "drain"],
        ["receipts", "send", "--year", "2026"],
        ["worker"],
    ):
        out = runner.invoke(main, args, env=env)
        assert out.exit_code == 1 and "set PAYWALL_SMTP_HOST" in out.output, (args, out.output)
    out = runner.invoke(main, ["mail", "drain"], env={**env, "PAYWALL_SMTP_HOST": "127.0.0.1"})
    assert out.exit_code == 1 and "set PAYWALL_MAIL_FROM" in out.output


def test_release_lets_an_operator_resend_a_claimed_row(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink, runner: CliRunner
) -> None:
    add_reader(db, "stuck")
    with pytest.raises(SystemExit), DyingTransport(sink, survive=0) as dying:
        send_campaign(db, msettings, campaign, dying, force=True)
    assert send(db, msettings, campaign, sink) == Counter(claimed=1)
    refused = runner.invoke(main, ["appeals", "release", "keep-us-open"], env=cli_env(sink))
    assert refused.exit_code == 1 and "--yes" in refused.output
    done = runner.invoke(
        main, ["appeals", "release", "keep-us-open", "--reader", "stuck", "--yes"], env=cli_env(sink)
    )
    assert done.exit_code == 0 and "released: 1" in done.output
    assert send(db, msettings, campaign, sink) == Counter(sent=1)
    assert len(sink.received) == 2  # the operator chose this duplicate


def test_smtp_server_gone_mid_campaign_then_rerun_finishes_without_duplicates(
    db: Database, msettings: Settings, campaign: Campaign
) -> None:
    """The relay disappears after 3 messages: the run stops and gives back what it did not send;
    a rerun once the relay is back sends the rest, and nobody gets the appeal twice."""
    for i in range(8):
        add_reader(db, f"g{i}")
    first = SmtpSink()
    first.__enter__()
    sent_so_far = []

    def server_goes_away(word: str, _cand: object) -> None:
        sent_so_far.append(word)
        if len(sent_so_far) == 3:
            first.__exit__(None, None, None)

    with SmtpTransport(host="127.0.0.1", port=first.port, security="none", backoff_seconds=0) as t:
        report = send_campaign(db, msettings, campaign, t, force=True, progress=server_goes_away)
    assert report.tally["sent"] == 3
    assert report.tally["deferred"] == 5 and report.stopped and "SMTP" in report.stopped
    with SmtpSink() as second, SmtpTransport(host="127.0.0.1", port=second.port, security="none") as t:
        again = send_campaign(db, msettings, campaign, t, force=True).tally
        assert again == Counter(sent=5, already_sent=3)
        everyone = first.recipients() + second.recipients()
    assert len(everyone) == 8 and len(set(everyone)) == 8


def test_send_once_precheck_skips_sent_readers_in_dry_run_and_under_a_limit(
    db: Database, msettings: Settings, campaign: Campaign, sink: SmtpSink
) -> None:
    """After a send, the ledger pre-check (not only the unique key) must see who already got it:
    a dry run must not list them as still to send, and a ``--limit`` rerun must spend its limit
    on readers who have not had the appeal, not on failed claims for those who have."""
    for i in range(3):
        add_reader(db, f"once{i}")
    assert send(db, msettings, campaign, sink) == Counter(sent=3)
    add_reader(db, "late0")
    add_reader(db, "late1")

    dry = send_campaign(db, msettings, campaign, None, dry_run=True, force=True)
    assert dry.tally == Counter(already_sent=3, would_send=2)
    assert sorted(c.external_id for c in dry.would_send) == ["late0", "late1"]

    assert send(db, msettings, campaign, sink, limit=1) == Counter(already_sent=3, sent=1, over_limit=1)
    assert send(db, msettings, campaign, sink, limit=1) == Counter(already_sent=4, sent=1)
    assert sorted(Counter(sink.recipients()).values()) == [1] * 5
    assert len(sink.received) == 5
