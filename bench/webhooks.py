"""Benchmark: signed Stripe deliveries per second, end to end over HTTP against gunicorn.

For each database (SQLite file, and PostgreSQL when one answers), this migrates a scratch
database, starts gunicorn with config/gunicorn.conf.py on a free loopback port, and sends
``--purchases`` copies of the first-purchase scenario (10 events each: customer, charge, intent,
subscription, invoice x4, invoice payment, Checkout Session; every copy with its own ids), signed
at send time, from ``--clients`` keep-alive connections. In the same run it measures a bare
endpoint of the same app (GET /healthz) with the same client, and then the replay rate of the
stored events (``paywall events replay``'s function, in this process).

On PostgreSQL, when Node is installed, it runs instead the side by side (issue 16): ``--rounds``
interleaved rounds (the order rotates each round) of three targets, each a fresh database on the
same PostgreSQL, the same signed events from the same clients:

- ``paywall``: POST /webhooks/stripe, paywall.wsgi:app under config/gunicorn.conf.py (as above);
- ``peer``: supabase's stripe-sync-engine (bench/peers/stripe-sync-engine/server.js, one Node
  process; ``npm ci`` runs first when its node_modules is missing), with its own migrated schema;
- ``floor``: POST /bench/floor/webhook of bench/floor_app.py under the same gunicorn: verify the
  signature as paywall does, insert the raw body once (autocommit, durable), answer 200.

Per target and round: acknowledged (2xx) events/s, p50/p99 of the answer, CPU per event (the
server's processes plus the PostgreSQL backends of its database, from /proc; PostgreSQL's shared
background processes are not counted), and the ratios paywall/peer and paywall/floor of the same
round, and floor/peer: the most any endpoint that commits each event before answering reaches
under this gunicorn. Then, untimed, statements per event: each target once more on a fresh database, its
connections through a counting proxy (every Query or Execute message is one statement, BEGIN and
COMMIT included). pg_stat_statements needs shared_preload_libraries and a restart of a PostgreSQL
other benches share; the proxy counts the same way for a Python and a Node client.

    .venv/bin/python bench/webhooks.py                      # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/webhooks.py --db postgresql --purchases 300
    .venv/bin/python bench/webhooks.py --db postgresql --rounds 3 --clients 4   # side by side
    .venv/bin/python bench/webhooks.py --db postgresql --no-peer               # paywall only

Loopback only; every server it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEER_DIR = BENCH / "peers" / "stripe-sync-engine"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

SECRET = "whsec_bench_secret"
SCENARIO = (
    ROOT.parent / "shared" / "fixtures" / "stripe" / "scenarios" / "a_monthly_subscription_checkout.json"
)


EVENTS_PER_PURCHASE = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_events(purchases: int, start: int = 0) -> list[bytes]:
    """Serialized events: ``purchases`` copies of scenario a, each with unique ids."""
    text = SCENARIO.read_text()
    out: list[bytes] = []
    for i in range(start, start + purchases):
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


def _send_chunk(args: tuple[int, list[tuple[str, str, bytes | None]], float]) -> tuple[int, list[float]]:
    """One client process: send its requests over one keep-alive connection, at most ``rate`` a
    second when given (paced from a start time, so a late answer does not lower the rate);
    returns the non-2xx count and each answer's time in seconds (signing included)."""
    port, chunk, rate = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bad = 0
    times: list[float] = []
    began = time.perf_counter()
    for k, (method, path, body) in enumerate(chunk):
        if rate:
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        start = time.perf_counter()
        headers = {"Content-Type": "application/json"}
        if body is not None:
            headers["Stripe-Signature"] = signature(body)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - start)
        if resp.status >= 300:
            bad += 1
    conn.close()
    return bad, times


def hammer(
    port: int, requests_: list[tuple[str, str, bytes | None]], clients: int, group: int = 1, rate: float = 0.0
) -> tuple[float, int, list[float]]:
    """Send the requests from ``clients`` processes (no shared GIL), one keep-alive connection
    each; returns (seconds, non-2xx count, answer times). Whole runs of ``group`` consecutive
    requests go to one connection: one purchase's events in order, different purchases
    concurrently, as in real traffic."""
    groups = [requests_[i : i + group] for i in range(0, len(requests_), group)]
    chunks = [[r for g in groups[c::clients] for r in g] for c in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        start = time.perf_counter()
        results = pool.map(_send_chunk, [(port, chunk, rate / clients) for chunk in chunks])
        elapsed = time.perf_counter() - start
    return elapsed, sum(r[0] for r in results), [t for r in results for t in r[1]]


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


def scratch_database(kind: str, pg_admin: str, name: str = "paywall_bench_sync") -> str:
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='paywall-bench-')}/bench.sqlite3"
    import psycopg

    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_admin.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from paywall.cli import upgrade_database
    from paywall.config import load_settings
    from paywall.db import Database
    from paywall.webhooks import inbox

    url = scratch_database(kind, args.pg_admin, f"{args.db_prefix}_sync")
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
        bare_s, bare_err, _ = hammer(port, [("GET", "/healthz", None)] * len(events), args.clients)
        hook_s, hook_err, _ = hammer(
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


# --- The side by side on PostgreSQL: paywall, the peer (stripe-sync-engine), the floor ---------

TARGETS = ("paywall", "peer", "floor")
# The floor's table (bench/floor_app.py inserts into it); here so the bench need not import the app.
FLOOR_EVENTS_DDL = "CREATE TABLE IF NOT EXISTS bench_floor_events (id TEXT PRIMARY KEY, body TEXT NOT NULL)"
STARTUP_CODES = (80877102, 80877103, 80877104)  # CancelRequest, SSLRequest, GSSENCRequest


class StatementCounter:
    """A loopback TCP proxy in front of PostgreSQL that counts the statements clients send.

    Every Query ('Q', simple protocol: node-postgres's BEGIN, COMMIT and unparameterized queries)
    and every Execute ('E', extended protocol: psycopg, node-postgres with parameters) message
    counts one. Runs in a thread of this process; only used in an untimed pass.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.statements = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._frontend(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _frontend(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server: parse message boundaries to count, forward every byte unchanged."""
        try:
            while True:  # untyped start-up messages until the StartupMessage itself
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                writer.write(head + await reader.readexactly(length - 8))
                await writer.drain()
                if code not in STARTUP_CODES:
                    break
            while True:
                head = await reader.readexactly(5)
                kind, length = head[:1], struct.unpack("!i", head[1:])[0]
                if kind in (b"Q", b"E"):
                    self.statements += 1
                writer.write(head + await reader.readexactly(length - 4))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def node_ready() -> str | None:
    """Why the peer cannot run, or None; runs ``npm ci`` when its node_modules is missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node or npm not found"
    if not (PEER_DIR / "node_modules" / "@supabase" / "stripe-sync-engine").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr.strip()[-300:]}"
    return None


def _pg_parts(pg_admin: str) -> tuple[str, int, str]:
    """(host, port, the admin URL without its database) of --pg-admin."""
    parsed = urllib.parse.urlsplit(pg_admin)
    return parsed.hostname or "127.0.0.1", parsed.port or 5432, pg_admin.rsplit("/", 1)[0]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def start_target(target: str, args: argparse.Namespace, database: str, db_port: int) -> tuple[Any, int, str]:
    """Create ``database``, migrate it, start the target's server on a free port with its
    connections to PostgreSQL on ``db_port`` (the proxy's in the counting pass).

    Returns (process, port, webhook path)."""
    import psycopg

    host, _, admin_base = _pg_parts(args.pg_admin)
    with psycopg.connect(args.pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    port = free_port()
    if target == "peer":
        env = dict(
            os.environ,
            PEER_PORT=str(port),
            PEER_DATABASE_URL=f"postgres://postgres@{host}:{db_port}/{database}",
            PEER_WEBHOOK_SECRET=SECRET,
        )
        proc = subprocess.Popen(
            ["node", "server.js"],
            cwd=PEER_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        path = "/webhooks/stripe"
    else:
        from paywall.cli import upgrade_database

        sa_base = admin_base.replace("postgresql://", "postgresql+psycopg://")
        upgrade_database(f"{sa_base}/{database}")
        if target == "floor":
            with psycopg.connect(f"{admin_base}/{database}", autocommit=True) as conn:
                conn.execute(FLOOR_EVENTS_DDL)
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH")) if p),
            PAYWALL_DATABASE_URL=f"postgresql+psycopg://postgres@{host}:{db_port}/{database}",
            PAYWALL_STRIPE_WEBHOOK_SECRET=SECRET,
            PAYWALL_BIND=f"127.0.0.1:{port}",
            PAYWALL_WORKERS=str(args.workers),
            PAYWALL_LOG_LEVEL="warning",
            PAYWALL__STRIPE__APPLIERS=str(args.appliers),
        )
        env.pop("PAYWALL_STRIPE_SECRET_KEY", None)
        env.pop("PAYWALL_CONFIG", None)
        if target == "floor":
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "config" / "gunicorn.conf.py"),
                "floor_app:app",
            ]
        else:
            # The one-command service: gunicorn and the applier beside it (paywall.supervise).
            command = [sys.executable, "-c", "from paywall.cli import main; main()", "serve"]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        path = "/bench/floor/webhook" if target == "floor" else "/webhooks/stripe"
    try:
        wait_up(port, timeout=60)
    except RuntimeError:
        _stop(proc)
        raise RuntimeError(f"{target} did not start") from None
    return proc, port, path


def stored(target: str, args: argparse.Namespace, database: str, port: int) -> str:
    """What the target holds after the run, as a check that every event was taken."""
    import psycopg

    if target == "peer":
        stats = _get_json(port, "/stats")
        return (
            f"applied {stats['applied']}, failed {stats['failed']}, Stripe API calls {stats['stripeApiCalls']}"
            f" (other Stripe calls {len(stats['unexpectedStripeApiCalls'])})"
        )
    _, _, admin_base = _pg_parts(args.pg_admin)
    with psycopg.connect(f"{admin_base}/{database}") as conn:
        if target == "floor":
            (count,) = conn.execute("SELECT count(*) FROM bench_floor_events").fetchone() or (0,)
            return f"stored {count}"
        rows = conn.execute(
            "SELECT status, count(*) FROM stripe_events GROUP BY status ORDER BY 1"
        ).fetchall()
    return ", ".join(f"{status} {n}" for status, n in rows)


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (paywall serve: gunicorn, its workers, the applier)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def wait_applied(conn: Any, timeout: float = 300) -> float:
    """Poll until no event waits to be applied; the perf_counter time it was first seen empty."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        (waiting,) = conn.execute("SELECT count(*) FROM stripe_events WHERE status = 'received'").fetchone()
        if not waiting:
            return time.perf_counter()
        time.sleep(0.01)
    raise RuntimeError("events still waiting after the timeout")


def lag_quantiles(conn: Any, after_id: int) -> tuple[float, float]:
    """p50 and p99 (ms) of the time from the 2xx's record to applied, of events after ``after_id``."""
    row = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)"
        " FROM (SELECT extract(epoch FROM processed_at - received_at) * 1000 AS lag FROM stripe_events"
        " WHERE id > %s) AS l",
        (after_id,),
    ).fetchone()
    return float(row[0]), float(row[1])


def measure_target(
    target: str,
    args: argparse.Namespace,
    events: list[bytes],
    warm: list[bytes],
    counter: StatementCounter | None,
) -> dict[str, Any]:
    """One target, one round: fresh database and server, warm-up, then the measured load."""
    from access import _cpu_seconds, server_pids

    database = f"{args.db_prefix}_{target}"
    _, pg_port, _ = _pg_parts(args.pg_admin)
    proc, port, path = start_target(target, args, database, counter.port if counter else pg_port)
    try:
        hammer(port, [("POST", path, b) for b in warm], args.clients, group=EVENTS_PER_PURCHASE)

        watcher = None
        if target == "paywall":
            import psycopg

            _, _, admin_base = _pg_parts(args.pg_admin)
            watcher = psycopg.connect(f"{admin_base}/{database}", autocommit=True)
            wait_applied(watcher)  # the warm-up's events too
            (watcher_pid,) = watcher.execute("SELECT pg_backend_pid()").fetchone()
            (first_id,) = watcher.execute("SELECT coalesce(max(id), 0) FROM stripe_events").fetchone()

        def pids() -> list[int]:
            # The bench's own watching connection is not the server's work.
            found = [proc.pid, *descendants(proc.pid), *server_pids(proc.pid, database)]
            return [pid for pid in found if watcher is None or pid != watcher_pid]

        def cpu_since(before: dict[int, float], before_pids: list[int], master_before: float) -> float:
            cpu = sum(_cpu_seconds(pid) - before.get(pid, 0.0) for pid in set(pids()) | set(before_pids))
            return cpu + _cpu_seconds(proc.pid, reaped=True) - _cpu_seconds(proc.pid) - master_before

        before_pids = pids()
        before = {pid: _cpu_seconds(pid) for pid in before_pids}
        master_before = _cpu_seconds(proc.pid, reaped=True) - _cpu_seconds(proc.pid)
        statements_before = counter.statements if counter else 0
        started = time.perf_counter()
        seconds, errors, times = hammer(
            port, [("POST", path, b) for b in events], args.clients, group=EVENTS_PER_PURCHASE
        )
        applied_s = lag = paced = None
        if watcher is not None:
            applied_s = wait_applied(watcher) - started
            lag = lag_quantiles(watcher, first_id)
        statements = (counter.statements - statements_before) if counter else 0
        # Server CPU until every event was applied (paywall), or answered (the others: applied
        # in the request).
        cpu = cpu_since(before, before_pids, master_before)
        if watcher is not None and args.lag_rate and counter is None:
            paced = paced_lag(watcher, port, path, args)
        held = stored(target, args, database, port)
        if watcher is not None:
            watcher.close()
    finally:
        _stop(proc)
    n = len(events)
    times.sort()
    return {
        "target": target,
        "events": n,
        "errors": errors,
        "ack_per_s": (n - errors) / seconds,
        "applied_per_s": (n - errors) / (applied_s if applied_s is not None else seconds),
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
        "lag_p50_ms": lag[0] if lag else 0.0,
        "lag_p99_ms": lag[1] if lag else 0.0,
        "paced": paced,
        "cpu_ms": cpu * 1000 / n,
        "statements_per_event": statements / n if counter else None,
        "stored": held,
    }


def paced_lag(watcher: Any, port: int, path: str, args: argparse.Namespace) -> dict[str, float]:
    """Send ``--lag-seconds`` of events at ``--lag-rate`` a second; the lag of those events."""
    (first_id,) = watcher.execute("SELECT coalesce(max(id), 0) FROM stripe_events").fetchone()
    purchases = max(1, int(args.lag_rate * args.lag_seconds) // EVENTS_PER_PURCHASE)
    events = make_events(purchases, start=7_000_000)
    seconds, errors, times = hammer(
        port, [("POST", path, b) for b in events], args.clients, group=EVENTS_PER_PURCHASE, rate=args.lag_rate
    )
    wait_applied(watcher)
    p50, p99 = lag_quantiles(watcher, first_id)
    times.sort()
    return {
        "rate": len(events) / seconds,
        "errors": errors,
        "lag_p50_ms": p50,
        "lag_p99_ms": p99,
        "answer_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }


def side_by_side(args: argparse.Namespace, targets: list[str]) -> None:
    events = make_events(args.purchases)
    warm = make_events(max(args.clients * 2, 10), start=9_000_000)
    print(
        f"side by side on PostgreSQL: {len(events)} events a round ({args.purchases} first purchases of 10 events), "
        f"{args.clients} client connections, gunicorn workers {args.workers}, {args.rounds} interleaved rounds"
    )
    header = (
        f"{'round':<6} {'target':<8} {'ack ev/s':>9} {'applied/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'lag p50':>8} {'lag p99':>8} {'CPU ms/ev':>10}  errors  stored"
    )
    print(header)
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        results = {}
        for target in order:
            res = measure_target(target, args, events, warm, None)
            results[target] = res
            print(
                f"{r + 1:<6} {target:<8} {res['ack_per_s']:>9.0f} {res['applied_per_s']:>10.0f} "
                f"{res['p50_ms']:>8.1f} {res['p99_ms']:>8.1f} {res['lag_p50_ms']:>8.0f} {res['lag_p99_ms']:>8.0f} "
                f"{res['cpu_ms']:>10.2f}  {res['errors']:>6}  {res['stored']}",
                flush=True,
            )
            if res["paced"]:
                paced = res["paced"]
                print(
                    f"{'':<6} {'':<8} paced at {paced['rate']:.0f} ev/s: lag p50 {paced['lag_p50_ms']:.0f} ms, "
                    f"p99 {paced['lag_p99_ms']:.0f} ms; answer p99 {paced['answer_p99_ms']:.1f} ms; "
                    f"errors {paced['errors']}",
                    flush=True,
                )
        rounds.append(results)
    statements: dict[str, float | None] = dict.fromkeys(targets)
    if args.statements:
        host, pg_port, _ = _pg_parts(args.pg_admin)
        counter = StatementCounter(host, pg_port)
        try:
            few = make_events(args.statement_purchases, start=8_000_000)
            for target in targets:
                statements[target] = measure_target(target, args, few, warm, counter)["statements_per_event"]
        finally:
            counter.close()

    def med(target: str, key: str) -> float:
        return statistics.median(r[target][key] for r in rounds)

    def ratio(a: str, b: str, key: str) -> str:
        per_round = [r[a][key] / r[b][key] for r in rounds]
        return f"{statistics.median(per_round):.2f} (rounds {', '.join(f'{x:.2f}' for x in per_round)})"

    print(
        "\nmedians of the rounds; statements per event from the untimed counting pass; applied/s, lag "
        "and CPU per event count until the last event was applied (the peer and the floor answer after "
        "their work: applied = acknowledged, lag 0)"
    )
    print(
        f"{'target':<8} {'ack ev/s':>9} {'applied/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'lag p50':>8} "
        f"{'lag p99':>8} {'CPU ms/ev':>10} {'statements/ev':>14}"
    )
    for target in targets:
        st = statements[target]
        shown = "-" if st is None else f"{st:.1f}"
        print(
            f"{target:<8} {med(target, 'ack_per_s'):>9.0f} {med(target, 'applied_per_s'):>10.0f} "
            f"{med(target, 'p50_ms'):>8.1f} {med(target, 'p99_ms'):>8.1f} {med(target, 'lag_p50_ms'):>8.0f} "
            f"{med(target, 'lag_p99_ms'):>8.0f} {med(target, 'cpu_ms'):>10.2f} {shown:>14}"
        )
    paced = [r["paywall"]["paced"] for r in rounds if r["paywall"].get("paced")]
    if paced:
        print(
            f"paywall paced at {statistics.median(p['rate'] for p in paced):.0f} ev/s: lag p50 "
            f"{statistics.median(p['lag_p50_ms'] for p in paced):.0f} ms, p99 "
            f"{statistics.median(p['lag_p99_ms'] for p in paced):.0f} ms (rounds "
            + ", ".join(f"{p['lag_p99_ms']:.0f}" for p in paced)
            + ")"
        )
    print("\nratios of the same round (median, then each round)")
    for other in targets[1:]:
        print(f"paywall/{other} ack ev/s: {ratio('paywall', other, 'ack_per_s')}")
        print(f"paywall/{other} CPU per event: {ratio('paywall', other, 'cpu_ms')}")
    if "peer" in targets and "floor" in targets:
        # The bound of any endpoint that commits each event before its 2xx under this gunicorn:
        # below 1.0, not even the bare insert acknowledges as fast as the peer's one Node process.
        print(f"floor/peer ack ev/s: {ratio('floor', 'peer', 'ack_per_s')}")
    if "peer" in targets:
        per_round = [r["paywall"]["applied_per_s"] / r["peer"]["ack_per_s"] for r in rounds]
        print(
            f"paywall applied/peer ack ev/s: {statistics.median(per_round):.2f} "
            f"(rounds {', '.join(f'{x:.2f}' for x in per_round)})"
        )


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
    parser.add_argument(
        "--db-prefix", default="paywall_bench", help="scratch PostgreSQL databases are named PREFIX_<target>"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the side by side")
    parser.add_argument(
        "--lag-rate",
        type=float,
        default=300,
        help="paywall: events/s of the paced phase that measures lag (0: skip)",
    )
    parser.add_argument("--lag-seconds", type=float, default=10, help="length of the paced phase")
    parser.add_argument(
        "--appliers", type=int, default=1, help="paywall: appliers beside gunicorn ([stripe] appliers)"
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="side by side: which of paywall,peer,floor to run"
    )
    parser.add_argument(
        "--no-peer", action="store_true", help="PostgreSQL: paywall alone, as before issue 16"
    )
    parser.add_argument(
        "--no-statements", dest="statements", action="store_false", help="skip the statement-counting pass"
    )
    parser.add_argument(
        "--statement-purchases",
        type=int,
        default=30,
        help="first purchases sent in the statement-counting pass",
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not pg_reachable(args.pg_admin):
        print("PostgreSQL not reachable; skipping it")
        kinds.remove("postgresql")
    if "postgresql" in kinds and not args.no_peer:
        why_not = node_ready()
        if why_not is None:
            kinds.remove("postgresql")
            side_by_side(args, [t for t in TARGETS if t in args.targets.split(",")])
        else:
            print(f"stripe-sync-engine peer skipped: {why_not}; paywall alone")
    if not kinds:
        return
    print(f"{'database':<11} {'events':>7} {'webhook/s':>10} {'healthz/s':>10} {'replay/s':>9}  errors")
    for kind in kinds:
        r = run(kind, args)
        print(
            f"{r['database']:<11} {r['events']:>7} {r['webhook_per_s']:>10.0f} {r['healthz_per_s']:>10.0f} "
            f"{r['replay_per_s']:>9.0f}  {r['webhook_errors'] + r['healthz_errors']}  replayed {r['replayed']}"
        )


if __name__ == "__main__":
    main()
