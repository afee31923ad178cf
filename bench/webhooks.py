"""Benchmark: signed Stripe deliveries per second, end to end over HTTP against gunicorn.

For each database (SQLite file, and PostgreSQL when one answers), this migrates a scratch
database, starts gunicorn with config/gunicorn.conf.py on a free loopback port, and sends
``--purchases`` copies of the first-purchase scenario (10 events each: customer, charge, intent,
subscription, invoice x4, invoice payment, Checkout Session; every copy with its own ids), signed
at send time, from ``--clients`` keep-alive connections. In the same run it measures a bare
endpoint of the same app (GET /healthz) with the same client, and then the replay rate of the
stored events (``paywall events replay``'s function, in this process).

    .venv/bin/python bench/webhooks.py                      # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/webhooks.py --db postgresql --purchases 300

Loopback only; every server it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "whsec_bench_secret"
SCENARIO = (
    ROOT.parent / "shared" / "fixtures" / "stripe" / "scenarios" / "a_monthly_subscription_checkout.json"
)


EVENTS_PER_PURCHASE = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_events(purchases: int) -> list[bytes]:
    """Serialized events: ``purchases`` copies of scenario a, each with unique ids."""
    text = SCENARIO.read_text()
    out: list[bytes] = []
    for i in range(purchases):
        copy = (
            text.replace("Qz8wLm3xTn", f"B{i:07d}x")
            .replace("cus_ZDb1GURItsMuYl", f"cus_bench{i:07d}")
            .replace("member_8731", f"member_bench_{i}")
        )
        out.extend(json.dumps(e, separators=(",", ":")).encode() for e in json.loads(copy))
    return out


def signature(body: bytes) -> str:
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _send_chunk(args: tuple[int, list[tuple[str, str, bytes | None]]]) -> int:
    """One client process: send its requests over one keep-alive connection; returns non-2xx count."""
    port, chunk = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bad = 0
    for method, path, body in chunk:
        headers = {"Content-Type": "application/json"}
        if body is not None:
            headers["Stripe-Signature"] = signature(body)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 300:
            bad += 1
    conn.close()
    return bad


def hammer(
    port: int, requests_: list[tuple[str, str, bytes | None]], clients: int, group: int = 1
) -> tuple[float, int]:
    """Send the requests from ``clients`` processes (no shared GIL), one keep-alive connection
    each; returns (seconds, non-2xx count). Whole runs of ``group`` consecutive requests go to one
    connection: one purchase's events in order, different purchases concurrently, as in real traffic."""
    groups = [requests_[i : i + group] for i in range(0, len(requests_), group)]
    chunks = [[r for g in groups[c::clients] for r in g] for c in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        start = time.perf_counter()
        errors = sum(pool.map(_send_chunk, [(port, chunk) for chunk in chunks]))
        elapsed = time.perf_counter() - start
    return elapsed, errors


def wait_up(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def scratch_database(kind: str, pg_admin: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='paywall-bench-')}/bench.sqlite3"
    import psycopg

    name = "paywall_bench_sync"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_admin.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from paywall.cli import upgrade_database
    from paywall.config import load_settings
    from paywall.db import Database
    from paywall.webhooks import inbox

    url = scratch_database(kind, args.pg_admin)
    upgrade_database(url)
    port = free_port()
    env = dict(
        os.environ,
        PAYWALL_DATABASE_URL=url,
        PAYWALL_STRIPE_WEBHOOK_SECRET=SECRET,
        PAYWALL_BIND=f"127.0.0.1:{port}",
        PAYWALL_WORKERS=str(args.workers),
        PAYWALL_LOG_LEVEL="warning",
    )
    env.pop("PAYWALL_STRIPE_SECRET_KEY", None)
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
            "paywall.wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(port)
        events = make_events(args.purchases)
        hammer(port, [("GET", "/healthz", None)] * 200, args.clients)  # warm up
        bare_s, bare_err = hammer(port, [("GET", "/healthz", None)] * len(events), args.clients)
        hook_s, hook_err = hammer(
            port, [("POST", "/webhooks/stripe", b) for b in events], args.clients, group=EVENTS_PER_PURCHASE
        )
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
    settings = load_settings(environ={"PAYWALL_DATABASE_URL": url})
    db = Database(url)
    start = time.perf_counter()
    tally = inbox.replay(db, settings, since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    replay_s = time.perf_counter() - start
    db.dispose()
    n = len(events)
    return {
        "database": kind,
        "events": n,
        "webhook_per_s": n / hook_s,
        "webhook_errors": hook_err,
        "healthz_per_s": n / bare_s,
        "healthz_errors": bare_err,
        "replay_per_s": sum(tally.values()) / replay_s,
        "replayed": dict(tally),
    }


def pg_reachable(admin: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin, connect_timeout=2):
            return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--purchases", type=int, default=200, help="copies of the 10-event first purchase")
    parser.add_argument(
        "--clients", type=int, default=8, help="client processes, one keep-alive connection each"
    )
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) * 2 + 1, help="gunicorn workers")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get("PAYWALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not pg_reachable(args.pg_admin):
        print("PostgreSQL not reachable; skipping it")
        kinds.remove("postgresql")
    print(f"{'database':<11} {'events':>7} {'webhook/s':>10} {'healthz/s':>10} {'replay/s':>9}  errors")
    for kind in kinds:
        r = run(kind, args)
        print(
            f"{r['database']:<11} {r['events']:>7} {r['webhook_per_s']:>10.0f} {r['healthz_per_s']:>10.0f} "
            f"{r['replay_per_s']:>9.0f}  {r['webhook_errors'] + r['healthz_errors']}  replayed {r['replayed']}"
        )


if __name__ == "__main__":
    main()
