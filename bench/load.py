"""Bounded load test on loopback: gunicorn on PostgreSQL (or SQLite), 90% access checks and 10%
signed Stripe webhooks, some delivered two or three times at once, for a fixed time. Then it
checks that the database holds exactly what was sent: one inbox row per distinct event, one
payment per distinct charge, no more, no less.

    .venv/bin/python bench/load.py --seconds 30 --clients 16 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/paywall_load

The database named by --database-url is dropped and created again (PostgreSQL), or the SQLite
file is replaced. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stripe" / "scenarios"
SECRET = "whsec_load_test"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = f"postgresql://{u.username or 'postgres'}@{u.host or '127.0.0.1'}:{u.port or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{u.database}"')


def paywall(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "paywall.cli", *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def donation_events(n: int) -> list[dict]:
    """n distinct charge.succeeded deliveries shaped exactly like the shared scenario's."""
    template = next(
        e
        for e in json.loads((FIXTURES / "b_one_time_donation_checkout.json").read_text())
        if e["type"] == "charge.succeeded"
    )
    events = []
    for i in range(n):
        event = copy.deepcopy(template)
        event["id"] = f"evt_load_{i:07d}"
        obj = event["data"]["object"]
        obj["id"] = f"ch_load_{i:07d}"
        obj["payment_intent"] = f"pi_load_{i:07d}"
        obj["balance_transaction"] = f"txn_load_{i:07d}"
        obj["amount"] = obj["amount_captured"] = 500 + (i % 50) * 100
        events.append(event)
    return events


def sign(body: bytes) -> str:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


class Client(threading.Thread):
    def __init__(
        self, port: int, key: str, deadline: float, work: list, lock: threading.Lock, seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.deadline, self.work, self.lock = port, key, deadline, work, lock
        self.rng = random.Random(seed)
        self.latencies: dict[str, list[float]] = {"access": [], "webhook": []}
        self.errors: list[str] = []
        self.delivered: set[str] = set()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while time.monotonic() < self.deadline:
            if self.rng.random() < 0.9:
                kind = "access"
                reader = (
                    f"load-reader-{self.rng.randrange(1000)}"
                    if self.rng.random() < 0.7
                    else f"anon-{self.rng.randrange(10**9)}"
                )
                body = json.dumps(
                    {"reader": reader, "article": f"article-{self.rng.randrange(200)}"}
                ).encode()
                headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
                path = "/v1/access"
            else:
                kind = "webhook"
                with self.lock:
                    if not self.work:
                        continue
                    event = self.work.pop()
                body = json.dumps(event).encode()
                headers = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}
                path = "/webhooks/stripe"
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.errors.append(f"{kind}: {type(exc).__name__}")
                continue
            self.latencies[kind].append(time.perf_counter() - started)
            if status >= 300:
                self.errors.append(f"{kind}: HTTP {status}")
            elif kind == "webhook":
                self.delivered.add(event["id"])
        conn.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/paywall_load")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--events", type=int, default=3000, help="distinct webhook events available")
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers (default: the config's)")
    args = parser.parse_args()

    reset_database(args.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    env.update(
        PAYWALL_DATABASE_URL=args.database_url,
        PAYWALL_STRIPE_WEBHOOK_SECRET=SECRET,
        PAYWALL_LOG_LEVEL="WARNING",
        PAYWALL_ACCESS_LOG="/dev/null",
    )
    if args.workers:
        env["PAYWALL_WORKERS"] = str(args.workers)
    paywall("db", "upgrade", env=env)
    key = paywall("keys", "create", "--role", "site", "--name", "load", env=env).split()[-1]

    events = donation_events(args.events)
    # A third of the events are delivered twice, a tenth three times, shuffled so copies race.
    work = []
    for i, event in enumerate(events):
        copies = 3 if i % 10 == 0 else 2 if i % 3 == 0 else 1
        work.extend([event] * copies)
    random.Random(7).shuffle(work)
    lock = threading.Lock()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "paywall.cli", "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(150):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        deadline = time.monotonic() + args.seconds
        clients = [Client(port, key, deadline, work, lock, seed) for seed in range(args.clients)]
        started = time.monotonic()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.communicate(timeout=30)

    access = [x for c in clients for x in c.latencies["access"]]
    hooks = [x for c in clients for x in c.latencies["webhook"]]
    errors = [e for c in clients for e in c.errors]
    delivered = set().union(*(c.delivered for c in clients))

    # What the database holds must be exactly what was accepted: one row per distinct event/charge.
    from sqlalchemy import create_engine, text

    engine = create_engine(args.database_url)
    with engine.connect() as conn:
        inbox = conn.execute(
            text("SELECT count(*) FROM stripe_events WHERE stripe_event_id LIKE 'evt_load_%'")
        ).scalar_one()
        payments = conn.execute(
            text("SELECT count(*) FROM payments WHERE stripe_charge_id LIKE 'ch_load_%'")
        ).scalar_one()
        amount = conn.execute(
            text(
                "SELECT coalesce(sum(amount_minor), 0) FROM payments WHERE stripe_charge_id LIKE 'ch_load_%'"
            )
        ).scalar_one()
    engine.dispose()
    expected_amount = sum(e["data"]["object"]["amount"] for e in events if e["id"] in delivered)

    total = len(access) + len(hooks)
    print(f"database: {args.database_url.split('://')[0]}; {args.clients} clients for {elapsed:.1f}s")
    print(f"requests: {total} ({total / elapsed:.0f}/s); access {len(access)}, webhooks {len(hooks)}")
    print(
        f"access  p50 {statistics.median(access) * 1000:.1f} ms, p99 {percentile(access, 99) * 1000:.1f} ms"
        if access
        else "access: none"
    )
    print(
        f"webhook p50 {statistics.median(hooks) * 1000:.1f} ms, p99 {percentile(hooks, 99) * 1000:.1f} ms"
        if hooks
        else "webhook: none"
    )
    print(f"errors: {len(errors)} {sorted(set(errors))[:5]}")
    print(f"distinct events accepted: {len(delivered)}; inbox rows: {inbox}; payments: {payments}")
    print(f"payment total: {amount} (expected {expected_amount})")
    ok = not errors and inbox == len(delivered) and payments == len(delivered) and amount == expected_amount
    print("check:", "OK, nothing lost or doubled" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
