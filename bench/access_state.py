"""What an in-memory cache of supporters' entitlements could save the access check, measured.

    .venv/bin/python bench/access_state.py                  # PostgreSQL, 100,000 readers
    .venv/bin/python bench/access_state.py --readers 30000 --rounds 5 --count 2000

The idea (issue 16, part two): comps, subscriptions and donations change only when the Stripe sync
or staff change them, so a process could hold them and skip reading them on every check. A revoked
grant (refund, lost dispute, comp ended by staff) must still be denied by the very next check in
every process, so each check has to ask the database whether anything changed since the cache was
filled: one round trip stays. What a cache can save is the entitlement part of the state query
(paywall/access/state.py), and this measures exactly that, on the same database bench/access.py
builds (the realistic mix of readers), in interleaved rounds (the median is reported):

1. Statements, on one connection, counting both sides: this process's CPU (psycopg and the row
   handling) and the PostgreSQL backend's CPU (``/proc/<pid>/stat`` of the connection's backend):
   ``SELECT 1`` (a round trip's floor); today's state query; and the two forms a cache hit could
   take, with the version the writers would bump (a small table, ``access_generation_bench``, made
   here): the state query with its entitlement branches guarded by "the version moved" (one
   statement on a hit and on a miss), and the state query without its entitlement branches plus
   the version (a miss then needs a second statement).
2. Requests, in this process (no HTTP server, no network; the app's own CPU per request only):
   ``GET /healthz``, ``POST /v1/access``, and ``POST /v1/access`` with the whole reader state taken
   from a per-process memo: no database read at all, the most any cache could save in the app
   (it would also skip the backend's share measured in 1). Not a correct check: a memo never sees
   a revocation; it is the ceiling, not a proposal.

PostgreSQL only (on SQLite the "backend" is this process). PAYWALL_BENCH_DATABASE_URL, else the
local paywall_access_state_bench database (recreated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/paywall_access_state_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The entitlement branches of the state query: subscriptions, donations, subscription payments, comp.
ENTITLEMENT_BRANCHES = 4
VERSION = "(SELECT sum(n) FROM access_generation_bench)"
VERSION_ROW = (
    f"SELECT 'gen', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {VERSION}, NULL, NULL, NULL, NULL"
)


def backend_cpu(pid: int) -> float:
    """utime + stime of a local PostgreSQL backend, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def statement_variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (SQL with %(name)s parameters, extra parameters): the forms compared in phase 1."""
    from paywall.access.state import STATE_QUERY

    branches = STATE_QUERY.pyformat_sql.split("UNION ALL")
    guarded = [
        b.rstrip() + f" AND {VERSION} <> %(known)s\n" if i < ENTITLEMENT_BRANCHES else b
        for i, b in enumerate(branches)
    ]
    light = branches[ENTITLEMENT_BRANCHES:]
    return {
        "SELECT 1 (a round trip)": ("SELECT 1", {}),
        "state query (today)": (STATE_QUERY.pyformat_sql, {}),
        "cache hit: guarded, skipped": ("UNION ALL".join([*guarded, " " + VERSION_ROW]), {"known": 0}),
        "cache miss: guarded, read": ("UNION ALL".join([*guarded, " " + VERSION_ROW]), {"known": -1}),
        "cache hit: no entitlements": ("UNION ALL".join([*light, " " + VERSION_ROW]), {}),
    }


def bench_statements(url: str, bodies: list[dict[str, Any]], rounds: int) -> None:
    import psycopg

    from paywall.access.rules import meter_period
    from paywall.access.settings import AccessSettings

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS access_generation_bench (shard int PRIMARY KEY, n bigint NOT NULL)"
        )
        conn.execute(
            "INSERT INTO access_generation_bench SELECT g, 0 FROM generate_series(0, 7) g ON CONFLICT DO NOTHING"
        )
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
        now = dt.datetime.now(dt.UTC)
        period, _ = meter_period(now, AccessSettings())
        since = now - dt.timedelta(days=90)
        variants = statement_variants()
        client: dict[str, list[float]] = {name: [] for name in variants}
        backend: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (sql, extra) in variants.items():
                params = [
                    {"reader": b["reader"], "period": period, "donations_since": since, **extra}
                    for b in bodies
                ]
                for p in params[:50]:  # warm: psycopg prepares a statement on its 5th use
                    conn.execute(sql, p).fetchall()
                c0, b0 = time.process_time(), backend_cpu(pid)
                for p in params:
                    conn.execute(sql, p).fetchall()
                client[name].append((time.process_time() - c0) * 1e6 / len(params))
                backend[name].append((backend_cpu(pid) - b0) * 1e6 / len(params))
        print(f"statements, median of {rounds} rounds of {len(bodies)} (us of CPU per statement):")
        for name in variants:
            c, b = statistics.median(client[name]), statistics.median(backend[name])
            print(f"  {name:30s} client {c:5.0f}  backend {b:5.0f}  total {c + b:5.0f}")


def wsgi_environ(method: str, path: str, body: bytes, key: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
    }
    if body:
        environ.update(
            CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), HTTP_AUTHORIZATION=f"Bearer {key}"
        )
    return environ


def bench_requests(url: str, bodies: list[dict[str, Any]], rounds: int) -> None:
    # As under config/gunicorn.conf.py: metrics and rate-limit counters in shared files.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="paywall-bench-metrics-")
    os.environ["PAYWALL_RATELIMIT_DIR"] = tempfile.mkdtemp(prefix="paywall-bench-ratelimit-")
    from paywall import auth
    from paywall.access import service
    from paywall.app import create_app
    from paywall.config import load_settings
    from paywall.db import Database
    from paywall.signing import generate_pem

    settings = load_settings(
        environ={
            "PAYWALL_DATABASE_URL": url,
            "PAYWALL_SIGNING_KEY": generate_pem(),
            "PAYWALL_LOG_LEVEL": "warning",
        }
    )
    app = create_app(settings)
    db = Database(url)
    with db.transaction() as session:
        _, key = auth.create_key(session, role="site", name=f"state-bench-{os.getpid()}-{time.time_ns()}")
    db.dispose()
    encoded = [json.dumps(b).encode() for b in bodies]
    statuses: set[str] = set()

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        statuses.add(status)
        return lambda data: None

    def call(environ: dict[str, Any]) -> None:
        out = app(environ, start)
        b"".join(out)
        getattr(out, "close", lambda: None)()

    def healthz() -> None:
        for _ in encoded:
            call(wsgi_environ("GET", "/healthz", b"", key))

    def access() -> None:
        for body in encoded:
            call(wsgi_environ("POST", "/v1/access", body, key))

    # Swapped by name in the module, where peek looks it up.
    real_load = vars(service)["load_state"]
    memo: dict[tuple[str, str | None], Any] = {}

    def memo_load(conn: Any, reader: str, article: str | None, *args: Any) -> Any:
        found = memo.get((reader, article))
        if found is None:
            found = memo[(reader, article)] = real_load(conn, reader, article, *args)
        return found

    def access_memo() -> None:
        vars(service)["load_state"] = memo_load
        try:
            access()
        finally:
            vars(service)["load_state"] = real_load

    phases: dict[str, Callable[[], None]] = {
        "GET /healthz": healthz,
        "POST /v1/access": access,
        "POST /v1/access, state memo": access_memo,
    }
    # Warm up outside the measured rounds: the app; the meter (every round after the first reads the
    # same articles again, which writes nothing); then the memo, filled after those writes.
    healthz()
    access()
    access_memo()
    cpu: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(rounds):
        for name, run in phases.items():
            c0 = time.process_time()
            run()
            cpu[name].append((time.process_time() - c0) * 1e6 / len(encoded))
    if statuses != {"200 OK"}:
        raise SystemExit(f"unexpected answers: {sorted(statuses)}")
    print(
        f"requests in this process, median of {rounds} rounds of {len(encoded)} (us of app CPU per request):"
    )
    for name in phases:
        print(f"  {name:30s} {statistics.median(cpu[name]):5.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    parser.add_argument("--count", type=int, default=2000, help="statements or requests per phase and round")
    args = parser.parse_args()

    import access as access_bench

    url = os.environ.get("PAYWALL_BENCH_DATABASE_URL", PG_URL)
    if not url.startswith("postgresql"):
        raise SystemExit("PostgreSQL only: the backend's CPU is what a cache would save")
    access_bench.prepare_database(url, args.readers)
    rng = random.Random(11)
    bodies = [access_bench.request_mix(rng, args.readers) for _ in range(args.count)]
    print(f"cores: {os.cpu_count()}; the realistic mix of bench/access.py, {args.readers} readers")
    bench_statements(url, bodies, args.rounds)
    bench_requests(url, bodies, args.rounds)


if __name__ == "__main__":
    main()
