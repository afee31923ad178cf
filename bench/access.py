"""Benchmark of POST /v1/access beside GET /healthz, under gunicorn with the production settings.

    .venv/bin/python bench/access.py                      # SQLite and PostgreSQL, 10 s per phase
    .venv/bin/python bench/access.py --db postgresql --seconds 20
    .venv/bin/python bench/access.py --floor              # also the floor: the database work alone

For each database: build a database of 100,000 readers (subscribers, donors, readers in grace,
readers with part of their meter spent), start gunicorn with config/gunicorn.conf.py on a free
loopback port, then measure, in the same run and against the same app, in --rounds interleaved
rounds (default 3; the median round is reported, since a shared machine drifts):

1. GET /healthz, closed loop (as fast as the clients go): requests/s, p50, p99;
2. POST /v1/access, closed loop, a realistic mix: 30 % subscribers, 10 % donors and readers in
   grace, 35 % site readers on the meter (a quarter of the readers registered), 25 % anonymous
   cookie ids (mostly first reads, which write a meter row); then, the same way, two more:
   registered readers only (at level "registered", 5 free articles), and POST /support/access
   (client mode: 75 % anonymous browsers, 25 % registered readers with a reader token), each with
   its ratio to the healthz phase of the same round;
3. POST /v1/access at a fixed 500 requests/s (open loop; latency counted from the scheduled send
   time, so a stall is not hidden): p50, p99; and GET /healthz paced the same way, right before,
   to show what the client and the server's plumbing alone add to that tail.

The summary also gives issue 16's terms, each a median of same-round ratios: the CPU per check
over healthz's, the p99 at 500/s over healthz's at 500/s, and the share of the check's closed-loop
capacity that 500/s was.

With --floor, the app also carries two bench-only routes (bench/floor_app.py) measured the
same way as step 2: /bench/floor/read (the JSON body, the state query and the rules; nothing else)
and /bench/floor/check (the same plus the meter write the real check makes). Their ratio to
healthz is the most any access check with this database work could reach on this machine.

Then, in the site's place: PyJWT verifying access tokens with the key from the JWKS, per second on
one core. The closed-loop client is wrk when installed (C, so it takes little of the machine),
else Python; the paced client is Python (processes x threads, http.client keep-alive); loopback.
PostgreSQL: PAYWALL_BENCH_DATABASE_URL (default the local paywall_access_bench database, recreated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READERS = 100_000
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/paywall_access_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_database(url: str, readers: int) -> str:
    """Create, migrate and fill the database; returns a site API key."""
    from sqlalchemy import insert

    from paywall import auth
    from paywall.cli import upgrade_database
    from paywall.db import Database
    from paywall.models import MeterRead, Payment, Reader, Subscription

    if url.startswith("postgresql"):
        base, name = url.rsplit("/", 1)
        admin = Database(f"{base}/postgres")
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
    upgrade_database(url)
    db = Database(url)
    now = dt.datetime.now(dt.UTC)
    period = f"{now:%Y-%m}"
    t0 = time.monotonic()
    with db.transaction() as s:
        s.execute(
            insert(Reader),
            [
                {
                    "external_id": f"reader-{i}",
                    "created_at": now,
                    "updated_at": now,
                    # Registered (signed in, or put by the site): a quarter of the metered readers.
                    "registered_at": now if REGISTERED.start <= i % 100 < REGISTERED.stop else None,
                }
                for i in range(readers)
            ],
        )
        subs: list[dict[str, Any]] = []
        pays: list[dict[str, Any]] = []
        meter: list[dict[str, Any]] = []
        for i in range(readers):
            rid = i + 1  # ids follow insertion order on a fresh table
            bucket = i % 100
            if bucket < 30:  # subscribers, some set to cancel, a few on trial
                status = "trialing" if bucket < 3 else "active"
                subs.append(
                    {
                        "stripe_subscription_id": f"sub_{i}",
                        "reader_id": rid,
                        "kind": "subscription",
                        "status": status,
                        "current_period_start": now - dt.timedelta(days=10),
                        "current_period_end": now + dt.timedelta(days=20),
                        "trial_end": now + dt.timedelta(days=5) if status == "trialing" else None,
                        "cancel_at_period_end": bucket % 7 == 0,
                        "livemode": False,
                        "interval_count": 1,
                        "quantity": 1,
                    }
                )
                pays.append(
                    {
                        "stripe_charge_id": f"ch_s{i}",
                        "stripe_subscription_id": f"sub_{i}",
                        "reader_id": rid,
                        "kind": "subscription",
                        "amount_minor": 500,
                        "currency": "eur",
                        "paid_at": now - dt.timedelta(days=10),
                        "livemode": False,
                    }
                )
            elif bucket < 35:  # past due, in grace
                subs.append(
                    {
                        "stripe_subscription_id": f"sub_{i}",
                        "reader_id": rid,
                        "kind": "subscription",
                        "status": "past_due",
                        "current_period_start": now - dt.timedelta(days=2),
                        "current_period_end": now + dt.timedelta(days=28),
                        "payment_failed_at": now - dt.timedelta(days=2),
                        "cancel_at_period_end": False,
                        "livemode": False,
                        "interval_count": 1,
                        "quantity": 1,
                    }
                )
            elif bucket < 45:  # donors, some refunded
                pays.append(
                    {
                        "stripe_charge_id": f"ch_d{i}",
                        "reader_id": rid,
                        "kind": "donation",
                        "amount_minor": 2000,
                        "refunded_minor": 2000 if bucket == 44 else 0,
                        "currency": "eur",
                        "paid_at": now - dt.timedelta(days=bucket - 30),
                        "livemode": False,
                    }
                )
            else:  # metered readers, part of the allowance spent
                for a in range(i % 3):
                    meter.append(
                        {
                            "reader": f"reader-{i}",
                            "period": period,
                            "article": f"art-{a}",
                            "slot": a + 1,
                            "read_at": now,
                        }
                    )
        s.execute(insert(Subscription), subs)
        s.execute(insert(Payment), pays)
        s.execute(insert(MeterRead), meter)
        _, key = auth.create_key(s, role="site", name="bench")
    # Settle the fill before measuring: statistics, and its writes flushed, so no phase pays for a
    # checkpoint of data the load itself did not write.
    with db.autocommit_engine.connect() as conn:  # no transaction around either command
        if db.dialect == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    print(
        f"  database filled in {time.monotonic() - t0:.1f}s: {readers} readers, {len(subs)} subscriptions, "
        f"{len(pays)} payments, {len(meter)} meter rows",
        flush=True,
    )
    return key


MIX = os.environ.get("BENCH_MIX", "realistic")
# Buckets (reader index % 100) of the registered readers: within the metered ones (45-99).
REGISTERED = range(45, 70)
# Reader tokens of registered readers, for the /support/access phase (set before the clients fork).
READER_TOKENS: list[str] = []
PATHS = {"browser": "/support/access"}


def reader_tokens(signing_key: str, readers: int, count: int = 500) -> list[str]:
    """Reader tokens (session version 0, as created) of ``count`` registered readers."""
    from paywall import signing
    from paywall.config import load_settings

    settings = load_settings(
        environ={"PAYWALL_SIGNING_KEY": signing_key, "PAYWALL_DATABASE_URL": "sqlite://"}
    )
    rng = random.Random(7)
    ids = [rng.randrange(readers // 100) * 100 + rng.choice(REGISTERED) for _ in range(count)]
    claims = ({"sub": f"reader-{i}", "sv": 0} for i in ids)
    return [signing.sign(settings, c, purpose="reader", ttl=dt.timedelta(days=1))[0] for c in claims]


def request_mix(rng: random.Random, readers: int, mode: str = "access") -> dict[str, str]:
    """One request body of ``mode``'s mix (BENCH_MIX=subscribers or anonymous isolates one kind of
    the access mix): "access", "registered" (registered readers) or "browser" (/support/access)."""
    article = f"art-{rng.randrange(40)}"
    if mode == "registered":
        i = rng.randrange(readers // 100) * 100 + rng.choice(REGISTERED)
        return {"reader": f"reader-{i}", "article": article, "level": "registered"}
    if mode == "browser":
        body = {"anonymous_reader": f"bench-browser-{rng.randrange(10**9):09d}", "article": article}
        if READER_TOKENS and rng.random() < 0.25:
            body["reader_token"] = rng.choice(READER_TOKENS)
        return body
    roll = {"subscribers": 0.0, "anonymous": 0.99}.get(MIX, rng.random())
    if roll < 0.30:
        i = rng.randrange(readers // 100) * 100 + rng.randrange(30)  # subscribers
    elif roll < 0.40:
        i = rng.randrange(readers // 100) * 100 + 30 + rng.randrange(15)  # grace and donors
    elif roll < 0.75:
        i = rng.randrange(readers // 100) * 100 + 45 + rng.randrange(55)  # metered
    else:
        return {"reader": f"anon-{rng.randrange(10**9):09d}", "article": article}
    return {"reader": f"reader-{i}", "article": article}


def client_process(
    port: int,
    mode: str,
    seconds: float,
    threads: int,
    rate: float,
    key: str,
    seed: int,
    readers: int,
    out: Any,
    path: str = "/v1/access",
) -> None:
    """One load process: ``threads`` keep-alive connections; puts (latencies, errors) on ``out``."""
    import threading

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_at = time.monotonic() + 0.2

    def run(tid: int) -> None:
        rng = random.Random(seed * 1000 + tid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        bad = 0
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        interval = threads / rate if rate else 0.0
        n = 0
        while time.monotonic() < start_at:
            time.sleep(0.01)
        deadline = start_at + seconds
        while True:
            scheduled = start_at + n * interval + (tid * interval / threads if interval else 0)
            now = time.monotonic()
            if now >= deadline:
                break
            if interval and scheduled > now:
                time.sleep(scheduled - now)
            sent = scheduled if interval else time.monotonic()
            try:
                if mode == "healthz":
                    conn.request("GET", "/healthz")
                else:
                    body = json.dumps(request_mix(rng, readers, mode))
                    conn.request("POST", PATHS.get(mode, path), body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.monotonic() - sent)
            n += 1
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, errors[0]))


def load(
    port: int,
    mode: str,
    seconds: float,
    key: str,
    readers: int,
    rate: float = 0.0,
    procs: int = 2,
    threads: int = 8,
    path: str = "/v1/access",
) -> dict[str, float]:
    """Run the load processes; requests/s and latency percentiles in milliseconds."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per_proc_rate = rate / procs if rate else 0.0
    ps = [
        ctx.Process(
            target=client_process,
            args=(port, mode, seconds, threads, per_proc_rate, key, p + 1, readers, out, path),
        )
        for p in range(procs)
    ]
    for p in ps:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in ps:
        got, bad = out.get(timeout=seconds + 60)
        lat.extend(got)
        errors += bad
    for p in ps:
        p.join()
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 2 else [0.0] * 99
    return {
        "rps": len(lat) / seconds,
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "n": len(lat),
        "errors": errors,
        "seconds": seconds,
    }


WRK_SCRIPT = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local n = READERS_HUNDREDS
local mix = "MIX"
request = function()
  local roll = math.random()
  if mix == "subscribers" then roll = 0 elseif mix == "anonymous" then roll = 0.99 end
  local article = "art-" .. math.random(0, 39)
  local reader
  local base = math.random(0, n - 1) * 100
  if roll < 0.30 then reader = "reader-" .. (base + math.random(0, 29))
  elseif roll < 0.40 then reader = "reader-" .. (base + 30 + math.random(0, 14))
  elseif roll < 0.75 then reader = "reader-" .. (base + 45 + math.random(0, 54))
  else reader = string.format("anon-%09d", math.random(0, 999999999)) end
  return wrk.format("POST", "PATH", HEADERS, '{"reader":"' .. reader .. '","article":"' .. article .. '"}')
end
"""


def wrk_load(
    port: int,
    mode: str,
    seconds: float,
    key: str,
    readers: int,
    connections: int = 32,
    path: str = "/v1/access",
) -> dict[str, float]:
    """Closed-loop load with wrk (C, so the client takes little of the machine): req/s, p50, p99."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        headers = f'{{["Authorization"] = "Bearer {key}", ["Content-Type"] = "application/json"}}'
        f.write(
            WRK_SCRIPT.replace("READERS_HUNDREDS", str(readers // 100))
            .replace("MIX", MIX)
            .replace("PATH", path)  # before the key goes in
            .replace("HEADERS", headers)
        )
        script = f.name
    if mode == "healthz":
        path = "/healthz"
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if mode != "healthz":
        cmd += ["-s", script]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    os.unlink(script)

    def ms(label: str) -> float:
        line = next(x for x in out.splitlines() if x.strip().startswith(label))
        value = line.split()[1]
        for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * factor
        return float(value)

    rps = float(next(x for x in out.splitlines() if x.startswith("Requests/sec:")).split()[1])
    bad = next((x for x in out.splitlines() if "Non-2xx" in x), "0").split()[-1]
    return {
        "rps": rps,
        "p50": ms("50%"),
        "p99": ms("99%"),
        "n": 0,
        "errors": int(bad),
        "seconds": int(seconds),
    }


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of a process; with ``reaped``, also of its children that have exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime + cstime: workers recycled (max_requests)
    return ticks / CLK_TCK


def server_pids(master: int, database: str | None) -> list[int]:
    """gunicorn's workers, and the PostgreSQL backends serving the benchmark database."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    if database:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
            ).fetchall()
        pids += [int(r[0]) for r in rows]
    return pids


def measured(run: Any, master: int, database: str | None) -> dict[str, float]:
    """Run one load phase and add the server CPU (app + database) it cost per request.

    Workers that gunicorn recycles during the phase (max_requests) are counted through the
    master's cutime/cstime, which include children it has reaped.
    """
    before_pids = server_pids(master, database)
    before = {pid: _cpu_seconds(pid) for pid in before_pids}
    master_before = _cpu_seconds(master, reaped=True)
    result: dict[str, float] = run()
    after_pids = set(server_pids(master, database)) | set(before_pids)
    cpu = sum(_cpu_seconds(pid) - before.get(pid, 0.0) for pid in after_pids if pid in before)
    cpu += sum(_cpu_seconds(pid) for pid in after_pids if pid not in before)
    cpu += _cpu_seconds(master, reaped=True) - master_before
    done = result["rps"] * result["seconds"]
    result["cpu_ms"] = cpu * 1000 / done if done else 0.0
    result["pids"] = len(after_pids)
    return result


def start_gunicorn(
    url: str, port: int, signing_key: str, *, app: str = "paywall.wsgi:app"
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        # bench/ for floor_app (--floor)
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "bench"), os.environ.get("PYTHONPATH")) if p),
        "PAYWALL_DATABASE_URL": url,
        "PAYWALL_BIND": f"127.0.0.1:{port}",
        "PAYWALL_SIGNING_KEY": signing_key,
        "PAYWALL_LOG_LEVEL": "warning",
        # The widget's limit per address would stop the /support/access phase (one client address):
        # still counted, so its cost is measured, but never reached.
        "PAYWALL__RATELIMIT__WIDGET_PER_ADDRESS": "100000000/minute",
    }
    env.pop("PAYWALL_CONFIG", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
            app,
        ],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_healthy(proc, port, "gunicorn")
    return proc


def wait_healthy(proc: subprocess.Popen[bytes], port: int, what: str, timeout: float = 30) -> None:
    """Wait until GET /healthz on ``port`` answers 200; else stop ``proc`` and exit naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kind_phases(
    kinds: dict[str, list[float]],
    health: dict[str, float],
    same_client: bool,
    port: int,
    seconds: float,
    key: str,
    readers: int,
    master: int,
    pgdb: str | None,
) -> str:
    """One round of the registered-reader and /support/access phases; appends each ratio to healthz."""
    # The Python client runs these (its bodies vary by kind), so healthz is compared by the same client.
    base = (
        health
        if same_client
        else measured(lambda: load(port, "healthz", seconds, key, readers), master, pgdb)
    )
    text = ""
    for kind, ratios in kinds.items():
        got = measured(lambda: load(port, kind, seconds, key, readers), master, pgdb)  # noqa: B023
        ratios.append(got["rps"] / base["rps"])
        text += (
            f"  {kind} {got['rps']:5.0f} req/s ({got['cpu_ms']:.2f} ms CPU, p99 {got['p99']:.0f} ms)"
            f" ratio {ratios[-1]:.2f} errors {got['errors']}"
        )
    return text


def bench_database(
    label: str,
    url: str,
    seconds: float,
    readers: int,
    signing_key: str,
    rounds: int,
    *,
    floor: bool = False,
) -> dict[str, Any]:
    print(f"{label}: preparing", flush=True)
    key = prepare_database(url, readers)
    READER_TOKENS[:] = reader_tokens(signing_key, readers)
    port = free_port()
    proc = start_gunicorn(url, port, signing_key, app="floor_app:app" if floor else "paywall.wsgi:app")
    healths: list[dict[str, float]] = []
    accesses: list[dict[str, float]] = []
    paceds: list[dict[str, float]] = []
    paced_healths: list[dict[str, float]] = []
    floors: dict[str, list[float]] = {"read": [], "check": []}
    # The registered-reader and /support/access phases, as ratios to the same round's healthz.
    kinds: dict[str, list[float]] = {"registered": [], "browser": []}
    try:
        load(port, "access", 2, key, readers)  # warm-up: connections, caches, the key cache
        closed = wrk_load if shutil.which("wrk") and not os.environ.get("BENCH_PYTHON_CLIENT") else load
        pgdb = url.rsplit("/", 1)[1] if url.startswith("postgresql") else None
        print(
            f"  closed-loop client: {'wrk' if closed is wrk_load else 'Python'}; {rounds} rounds of {seconds:g} s"
        )
        # Interleaved rounds: a shared machine drifts, so each access phase is compared with the
        # healthz phase right before it, and the median round is reported.
        for n in range(1, rounds + 1):
            health = measured(lambda: closed(port, "healthz", seconds, key, readers), proc.pid, pgdb)
            access = measured(lambda: closed(port, "access", seconds, key, readers), proc.pid, pgdb)
            paced_health = load(port, "healthz", seconds, key, readers, rate=500, procs=2, threads=16)
            paced = load(port, "access", seconds, key, readers, rate=500, procs=2, threads=16)
            healths.append(health)
            accesses.append(access)
            paceds.append(paced)
            paced_healths.append(paced_health)
            kind_text = kind_phases(
                kinds, health, closed is load, port, seconds, key, readers, proc.pid, pgdb
            )
            floor_text = ""
            for name in floors if floor else ():
                got = measured(
                    lambda: closed(port, "access", seconds, key, readers, path=f"/bench/floor/{name}"),  # noqa: B023
                    proc.pid,
                    pgdb,
                )
                floors[name].append(got["rps"] / health["rps"])
                floor_text += f"  floor/{name} {got['rps']:5.0f} req/s ({got['cpu_ms']:.2f} ms CPU) ratio {floors[name][-1]:.2f}"
            print(
                f"  round {n}: healthz {health['rps']:5.0f} req/s ({health['cpu_ms']:.2f} ms CPU/request)"
                f"  access {access['rps']:5.0f} req/s ({access['cpu_ms']:.2f} ms CPU/request,"
                f" p99 {access['p99']:.0f} ms)  ratio {access['rps'] / health['rps']:.2f}"
                f"  | @500/s access p50 {paced['p50']:.1f} ms p99 {paced['p99']:.1f} ms"
                f" (healthz p99 {paced_health['p99']:.1f} ms)"
                f"  errors {access['errors'] + paced['errors']}{kind_text}{floor_text}",
                flush=True,
            )
    finally:
        stop(proc)
    ratios = [a["rps"] / h["rps"] for h, a in zip(healths, accesses, strict=True)]
    cpu_ratios = [h["cpu_ms"] / a["cpu_ms"] for h, a in zip(healths, accesses, strict=True) if a["cpu_ms"]]
    p99s = [p["p99"] for p in paceds]
    result = {
        "label": label,
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else 0.0,
        "p99_500": statistics.median(p99s),
        "p50_500": statistics.median(p["p50"] for p in paceds),
        **{f"ratio_{kind}": statistics.median(got) for kind, got in kinds.items()},
    }
    print(
        f"  {label} median of {rounds}: access/healthz throughput {result['ratio']:.2f}"
        f" (range {min(ratios):.2f}-{max(ratios):.2f}; server CPU ratio {result['cpu_ratio']:.2f});"
        f" @500/s p50 {result['p50_500']:.1f} ms, p99 {result['p99_500']:.1f} ms"
        f" (range {min(p99s):.1f}-{max(p99s):.1f})",
        flush=True,
    )
    print(
        f"  {label} median of {rounds}, throughput ratio to healthz: registered readers"
        f" {result['ratio_registered']:.2f} (range {min(kinds['registered']):.2f}-{max(kinds['registered']):.2f});"
        f" /support/access {result['ratio_browser']:.2f}"
        f" (range {min(kinds['browser']):.2f}-{max(kinds['browser']):.2f})",
        flush=True,
    )
    # Issue 16's terms, each from its own round: CPU per check over healthz's, the paced p99 over
    # healthz's at the same rate, and what share of the check's closed-loop capacity 500/s was.
    per_check = [a["cpu_ms"] / h["cpu_ms"] for h, a in zip(healths, accesses, strict=True) if h["cpu_ms"]]
    tails = [p["p99"] / h["p99"] for h, p in zip(paced_healths, paceds, strict=True) if h["p99"]]
    loads = [500 / a["rps"] for a in accesses if a["rps"]]
    result.update(cpu_per_check=statistics.median(per_check), p99_over_healthz=statistics.median(tails))
    result["load_500"] = statistics.median(loads)
    print(
        f"  {label} median of {rounds}, issue 16 terms: CPU per check {result['cpu_per_check']:.2f}x healthz's"
        f" (range {min(per_check):.2f}-{max(per_check):.2f}); p99 at 500/s {result['p99_over_healthz']:.1f}x"
        f" healthz's at 500/s (range {min(tails):.1f}-{max(tails):.1f}); 500/s was {result['load_500']:.0%}"
        f" of the check's closed-loop capacity (range {min(loads):.0%}-{max(loads):.0%})",
        flush=True,
    )
    if floor:
        for name, got in floors.items():
            result[f"floor_{name}"] = statistics.median(got)
        print(
            f"  {label} floor, median ratio to healthz: state query and rules only {result['floor_read']:.2f};"
            f" with the meter write {result['floor_check']:.2f} (no key check, no validation, no error shape)",
            flush=True,
        )
    return result


def bench_tokens(signing_key: str, seconds: float) -> dict[str, float]:
    """Tokens verified per CPU-second, the way a site does it: PyJWT with the key from the JWKS.

    Twice: PyJWT with its own EdDSA (cryptography, so OpenSSL), as docs/access.md's Python example;
    and docs/examples/verify_token.py (libsodium through PyNaCl, the same checks as docs/access.md's
    PHP sodium example), when PyNaCl is installed.
    """
    import jwt

    from paywall import signing
    from paywall.config import load_settings

    settings = load_settings(
        environ={"PAYWALL_SIGNING_KEY": signing_key, "PAYWALL_DATABASE_URL": "sqlite://"}
    )
    claims = {"sub": "reader-1", "access": True, "reason": "subscription", "until": None, "appeal": False}
    token, _ = signing.sign(settings, claims, purpose="access", ttl=dt.timedelta(minutes=15))
    jwks = json.loads(json.dumps(signing.jwks(settings)))  # as fetched from /.well-known/jwks.json

    def rate_of(verify: Any) -> tuple[float, float]:
        assert verify(token)["sub"] == "reader-1"
        n = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        deadline = wall0 + seconds
        while time.monotonic() < deadline:
            for _ in range(200):
                verify(token)
            n += 200
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        # Per CPU-second is the per-core figure even when other work shares the machine.
        return n / cpu, n / wall

    key = jwt.PyJWK(jwks["keys"][0]).key
    rates: dict[str, float] = {}
    rates["pyjwt"], wall = rate_of(lambda t: jwt.decode(t, key, algorithms=["EdDSA"]))
    print(
        f"token verification, PyJWT + cryptography (OpenSSL): {rates['pyjwt']:,.0f}/s per CPU-second ({wall:,.0f}/s wall)"
    )
    try:
        sys.path.insert(0, str(ROOT / "docs" / "examples"))
        from verify_token import TokenVerifier
    except ImportError:
        print("token verification, docs/examples/verify_token.py (libsodium): skipped, pip install pynacl")
        return rates
    rates["libsodium"], wall = rate_of(TokenVerifier(jwks).verify)
    print(
        f"token verification, docs/examples/verify_token.py (libsodium): {rates['libsodium']:,.0f}/s per CPU-second"
        f" ({wall:,.0f}/s wall)"
    )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    parser.add_argument("--readers", type=int, default=READERS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved healthz/access rounds")
    parser.add_argument(
        "--floor", action="store_true", help="also measure the database work alone (bench/floor_app.py)"
    )
    args = parser.parse_args()

    from paywall.signing import generate_pem

    signing_key = generate_pem()
    print(
        f"cores: {os.cpu_count()}; gunicorn workers: {os.environ.get('PAYWALL_WORKERS', 'default (2 x cores + 1)')}"
    )
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            bench_database(
                "SQLite",
                f"sqlite:///{tmp}/bench.sqlite3",
                args.seconds,
                args.readers,
                signing_key,
                args.rounds,
                floor=args.floor,
            )
    if args.db in ("postgresql", "both"):
        url = os.environ.get("PAYWALL_BENCH_DATABASE_URL", PG_URL)
        bench_database(
            "PostgreSQL", url, args.seconds, args.readers, signing_key, args.rounds, floor=args.floor
        )
    bench_tokens(signing_key, min(args.seconds, 5.0))


if __name__ == "__main__":
    main()
