"""Mailer benchmark: one campaign to 10,000 readers through the send-once ledger, beside a plain
smtplib loop sending the same prepared messages, both to a local SMTP server that accepts and
discards, in the same run. Target: the ledger path at >= 0.5x the plain loop.

    .venv/bin/python bench/mailer.py                 # SQLite in a temporary folder
    .venv/bin/python bench/mailer.py --readers 2000 --database-url postgresql+psycopg://…/paywall_bench

The ledger path does everything a real send does per reader: claim (its own committed
transaction), render the Jinja2 templates, sign three links, build and send the message, and mark
it (riding in the next claim's transaction). The plain loop only sends pre-built bytes.
"""

from __future__ import annotations

import argparse
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paywall import signing
from paywall.campaigns.definition import load_campaign
from paywall.campaigns.message import build_appeal
from paywall.campaigns.sending import send_campaign
from paywall.cli import upgrade_database
from paywall.config import load_settings
from paywall.db import Database
from paywall.mail.message import to_bytes
from paywall.mail.smtp import SmtpTransport
from paywall.models import AppealSend, Reader


def wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the SMTP server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/bench.sqlite3"
    if url.startswith("postgresql"):
        admin = Database(url)
        with admin.engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        admin.dispose()
    upgrade_database(url)
    db = Database(url)

    # The SMTP server runs in its own process, as a real relay would: in this process it would
    # compete with the sender for the interpreter lock and slow both loops unevenly.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    env = {
        "PAYWALL_DATABASE_URL": url,
        "PAYWALL_SMTP_HOST": "127.0.0.1",
        "PAYWALL_SMTP_PORT": str(port),
        "PAYWALL_SMTP_SECURITY": "none",
        "PAYWALL_MAIL_FROM": "Newsroom <appeals@news.example.org>",
        "PAYWALL_PUBLIC_URL": "https://paywall.example.org",
        "PAYWALL_SIGNING_KEY": signing.generate_pem(),
    }
    settings = load_settings(environ=env)
    campaign = load_campaign(settings, "keep-us-open", environ={})
    try:
        with db.transaction() as s:
            s.execute(
                insert(Reader),
                [
                    {
                        "external_id": f"reader-{i}",
                        "email": f"reader-{i}@example.org",
                        "name": f"Reader {i}",
                        "marketing_opt_in": True,
                    }
                    for i in range(args.readers)
                ],
            )
        with db.transaction(readonly=True) as s:
            people = list(s.execute(select(Reader.external_id, Reader.email, Reader.name)))

        # The same messages, prepared up front for the plain loop.
        t0 = time.perf_counter()
        messages = [
            build_appeal(settings, campaign, external_id=ext, email=email, name=name)
            for ext, email, name in people
        ]
        prepared = [to_bytes(msg) for msg in messages]
        prepare_s = time.perf_counter() - t0

        def plain_loop() -> float:
            start = time.perf_counter()
            conn = smtplib.SMTP("127.0.0.1", port)
            for (_, email, _), payload in zip(people, prepared, strict=True):
                conn.sendmail("appeals@news.example.org", [email], payload)
            conn.quit()
            return len(prepared) / (time.perf_counter() - start)

        plain_before = plain_loop()

        by_reader = {ext: msg for (ext, _, _), msg in zip(people, messages, strict=True)}

        def ledger_run(build: Any) -> float:
            with db.transaction() as s:
                s.execute(delete(AppealSend))
            transport = SmtpTransport(host="127.0.0.1", port=port, security="none")
            start = time.perf_counter()
            report = send_campaign(db, settings, campaign, transport, force=True, build=build)
            elapsed = time.perf_counter() - start
            transport.close()
            assert report.tally["sent"] == args.readers, report.tally
            return args.readers / elapsed

        # The same prepared messages, through the ledger: claim, send, mark.
        ledger_rate = ledger_run(lambda cand: by_reader[cand.external_id])
        # And end to end: claim, render, sign the links, build, send, mark.
        full_rate = ledger_run(None)

        plain_after = plain_loop()
        plain = (plain_before + plain_after) / 2

        transport = SmtpTransport(host="127.0.0.1", port=port, security="none")
        start = time.perf_counter()
        rerun = send_campaign(db, settings, campaign, transport, force=True)
        rerun_s = time.perf_counter() - start
        assert rerun.tally == {"already_sent": args.readers}, rerun.tally
        with db.transaction(readonly=True) as s:
            rows = s.query(AppealSend).filter(AppealSend.state == "sent").count()
        assert rows == args.readers
    finally:
        server.terminate()
        server.wait(10)
        db.dispose()
        tmp.cleanup()

    print(
        f"database: {db.dialect}; readers: {args.readers}; SMTP: aiosmtpd Sink (accepts, discards) in its own process"
    )
    print(f"prepare (render + sign + flatten), once: {args.readers / prepare_s:,.0f} msg/s")
    print(
        f"plain smtplib loop (prepared bytes):     {plain:,.0f} msg/s  (before {plain_before:,.0f}, after {plain_after:,.0f})"
    )
    print(f"send-once ledger, same prepared messages (claim, send, mark): {ledger_rate:,.0f} msg/s")
    print(f"ratio ledger / plain: {ledger_rate / plain:.2f}  (target >= 0.5)")
    print(f"send-once ledger end to end (claim, render, sign, build, send, mark): {full_rate:,.0f} msg/s")
    print(f"rerun (everything already sent): {rerun_s:.2f} s, nothing sent")


if __name__ == "__main__":
    main()
