"""Every process logs through one set-up: JSON lines, the redaction filter (linear time, every
address the API accepts), and control characters escaped so no value can forge a line."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask.testing import FlaskClient

from paywall.db import Database
from paywall.mail import queue
from paywall.observability import configure_logging, redact
from tests.conftest import SIGNING_KEY
from tests.support.mail import SmtpSink, smtp_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What the paywall handler writes, in plain-text format (the format a newline would break)."""
    configure_logging("DEBUG", json_logs=False)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_paywall", False))
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(old)
        configure_logging("INFO", json_logs=True)


class BusyMailbox(SmtpSink):
    """Answers every RCPT with a temporary refusal that quotes the recipient, as real relays do."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.asked.set()
        return f"451 4.2.1 <{address}>: mailbox busy, try again later"


@pytest.mark.slow
def test_worker_logs_smtp_replies_through_the_redaction_filter(db: Database, migrated: str) -> None:
    """`paywall worker` used to call logging.basicConfig: plain lines, no filter, the address
    from the SMTP reply in the clear. Now its lines are the web app's JSON lines, redacted."""
    address = "ana.worker@example.org"
    with db.transaction() as session:
        queue.enqueue(
            session,
            kind="donation_receipt",
            dedupe_key="receipt:ch_worker",
            to_email=address,
            reader_id=None,
            data={"amount_minor": 500, "currency": "usd"},
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    with BusyMailbox() as sink:
        env.update(smtp_env(sink))
        env.update(
            {
                "PAYWALL_DATABASE_URL": migrated,
                "PAYWALL_SIGNING_KEY": SIGNING_KEY,
                "PAYWALL__MAILER__BACKOFF_SECONDS": "0",
                "PAYWALL__MAILER__MAX_ATTEMPTS": "2",
            }
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", "from paywall.cli import main; main()", "worker", "--poll", "30"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert sink.asked.wait(60), "the worker never reached the SMTP server"
            time.sleep(1.0)  # the second attempt, then the worker logs and waits
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    assert any("smtp attempt" in r["message"] and "451" in r["message"] for r in records), err
    assert address not in err and "ana.worker" not in err


@pytest.mark.parametrize(
    "address",
    [
        "a@localhost",
        "x@[127.0.0.1]",
        "user@[IPv6:2001:db8::1]",
        "ana@bücher.de",
        "José.Ñandú@例子.广告",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.org",
    ],
)
def test_redaction_covers_addresses_the_api_accepts(address: str) -> None:
    line = redact(f"550 5.1.1 <{address}>: no such user; to: {address}, again {address}")
    assert line == "550 5.1.1 <[email]>: no such user; to: [email], again [email]", line


HOSTILE = [
    "evt_" + "a" * 100_000,
    "a@" * 50_000,
    "a." * 50_000,
    "x@" + "[" * 100_000,
    "@" * 100_000,
    "eyJ-" * 25_000,
    "eyJa." * 20_000,
    "-----BEGIN PRIVATE KEY-----" * 3_700,
    "-----BEGIN " + "A" * 100_000,
]


def test_redaction_is_linear_on_a_100000_character_value(captured: io.StringIO) -> None:
    """One signed event with a 100,000-character id used to stall a worker for over a minute
    (quadratic matching) until gunicorn killed it; each of these now takes milliseconds."""
    log = logging.getLogger("paywall.test")
    for value in HOSTILE:
        started = time.perf_counter()
        log.warning("stripe event %s: failed", value)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"{elapsed:.2f} s for {value[:12]!r}…"
    assert len(captured.getvalue().splitlines()) == len(HOSTILE)


def test_a_newline_in_a_request_path_cannot_forge_a_log_line(
    client: FlaskClient, captured: io.StringIO
) -> None:
    log = logging.getLogger("paywall.test")

    @client.application.before_request
    def _probe() -> None:
        from flask import request

        if request.path.startswith("/_probe/"):
            log.warning("probe on %s", request.path)

    forged = "x%0A2026-11-29 12:00:00,000 WARNING paywall.auth [-] admin key created%0D"
    client.get(f"/_probe/{forged}")
    lines = captured.getvalue().splitlines()
    (probe,) = (line for line in lines if "probe on" in line)
    assert "probe on /_probe/x\\x0a2026-11-29" in probe and probe.endswith("created\\x0d")
    assert not any(line.startswith("2026-11-29 12:00:00,000") for line in lines)


def test_gunicorn_access_lines_are_json_whatever_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """gunicorn writes access lines itself; the logger class config/gunicorn.conf.py names escapes
    and redacts each value, so a decoded %0A, a quote or a backslash keeps one valid JSON line."""
    from gunicorn.config import Config
    from gunicorn.util import load_class

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the conf file then leaves it
    # The conf file shares rate-limit counters through this directory when unset; set it here so
    # the variable is undone after the test and later apps in this process keep their own counters.
    monkeypatch.setenv("PAYWALL_RATELIMIT_DIR", str(tmp_path / "ratelimit"))
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", conf["access_log_format"])
    cfg.set("logger_class", conf["logger_class"])
    logger = load_class(cfg.logger_class)(cfg)
    path = '/v1/readers/x\n{"level": "ERROR", "message": "forged"}\\"ana@example.org'
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    resp = SimpleNamespace(status="404 NOT FOUND", sent=12, headers=[("X-Request-ID", "r\n1")])
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, dt.timedelta(milliseconds=3))
    line = cfg.access_log_format % logger.atoms_wrapper_class(atoms)
    assert "\n" not in line
    record = json.loads(line)
    assert record["path"] == path.replace("ana@example.org", "[email]")
    assert record["request_id"] == "r\n1" and record["status"] == 404

    # A response whose size gunicorn does not know still makes a valid JSON line.
    resp.sent = None
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, dt.timedelta(milliseconds=3))
    assert json.loads(cfg.access_log_format % logger.atoms_wrapper_class(atoms))["bytes"] is None
