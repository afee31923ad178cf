"""Benchmark: appeal events (POST /support/events) recorded beside the access check, on PostgreSQL.

    .venv/bin/python bench/appeal_events.py                       # 3 rounds of 10 s phases
    .venv/bin/python bench/appeal_events.py --events 2000 --beacon 4,2 --rounds 5

Issue 18's target: 2,000 appeal events per second recorded on this 2-core machine while the p99 of
POST /v1/access at a steady 500 requests/s rises by less than 10 %. Under gunicorn with
config/gunicorn.conf.py (the production settings; the same server for every phase), on a database
of --readers readers built as bench/access.py builds it, each round runs, interleaved:

1. POST /v1/access closed loop (as fast as the clients go): the capacity 500/s is a fraction of,
   and the server CPU (app + PostgreSQL) per check; GET /healthz closed loop likewise (the floor);
2. POST /v1/access at 500/s alone (open loop: latency from the scheduled send time): p50, p99;
3. for each --to arm (the web workers' /support/events, or the beacon intake of [server]
   events_bind, started as `paywall serve` starts it: `paywall experiments intake`, nice 10) and
   each --beacon size in turn: beacons closed loop (the server CPU per beacon), then the same
   500/s with beacons at --events events/s at the same time (each beacon a page's events: a view
   and an impression per ask, footer asks, so every impression also spends an ask in
   appeal_asks); the rows that landed in appeal_events in the phase (half a second after it, as
   the workers write every 50 ms) give the events/s actually recorded. The ``sink`` arm sends
   the same beacons to a server that only reads them and answers 202 (nice 10, records
   nothing): its rise is what the load alone costs on this machine (the clients that stand in
   for browsers elsewhere, the loopback traffic), below which no intake can go.

Medians over the rounds are reported; the p99 rise is the median of each round's (3) over (2).
Beacons carry X-Forwarded-For addresses of about 100,000 readers (proxy_hops 1), so the default
limit per address holds and is counted, as on a real site; its cost is in the figures. PostgreSQL: PAYWALL_BENCH_DATABASE_URL (default the local paywall_events_bench
database, recreated).
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
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import access as access_bench  # noqa: E402 - bench/access.py, beside this file

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/paywall_events_bench"


def beacon_bodies(signing_key: str, size: int, count: int = 2000) -> list[bytes]:
    """``count`` beacons of ``size`` events: a view and an impression per footer ask (a view only for
    a holdback browser), for readers and anonymous browsers in two variants and the holdback."""
    from paywall.config import load_settings
    from paywall.experiments.asks import Ask, encode_ask

    settings = load_settings(
        environ={"PAYWALL_SIGNING_KEY": signing_key, "PAYWALL_DATABASE_URL": "sqlite://"}
    )
    rng = random.Random(18)
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for _ in range(count):
        events: list[dict[str, str]] = []
        while len(events) < size:
            subject = (
                f"reader-{rng.randrange(100_000)}"
                if rng.random() < 0.5
                else f" anon:b{rng.randrange(10**9):09d}xxxxxxx"
            )
            variant = rng.choice(("plain", "urgent", "holdback"))
            ask = encode_ask(settings, Ask("footer", "footer-copy", variant, subject, now))
            events.append({"ask": ask, "type": "view"})
            if len(events) < size and variant != "holdback":  # a holdback browser only views
                events.append({"ask": ask, "type": "impression"})
        bodies.append(json.dumps({"events": events[:size]}).encode())
    return bodies


def beacon_process(
    port: int,
    seconds: float,
    threads: int,
    rate: float,
    bodies: list[bytes],
    seed: int,
    out: Any,
    nice: int = 0,
) -> None:
    """Open-loop beacons at ``rate``/s over ``threads`` keep-alive connections; puts (latencies,
    errors, this process's CPU seconds). ``nice``: lower its priority (browsers are elsewhere)."""
    import threading

    if nice:
        os.nice(nice)

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_at = time.monotonic() + 0.2

    def run(tid: int) -> None:
        rng = random.Random(seed * 1000 + tid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "text/plain;charset=UTF-8"}
        interval = threads / rate
        mine: list[float] = []
        bad = n = 0
        deadline = start_at + seconds
        while True:
            scheduled = start_at + n * interval + tid * interval / threads
            now = time.monotonic()
            if now >= deadline:
                break
            if scheduled > now:
                time.sleep(scheduled - now)
            # Readers' browsers, each its own address, behind one proxy (see main: proxy_hops 1).
            headers["X-Forwarded-For"] = (
                f"10.{rng.randrange(20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            try:
                # Each body once (its asks are unique): a replayed beacon is not recorded again.
                body = bodies[(tid + n * threads) % len(bodies)]
                conn.request("POST", "/support/events", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                bad += resp.status != 202
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.monotonic() - scheduled)
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
    out.put((lat, errors[0], time.process_time()))


# Run `paywall experiments intake` with paywall/widget/intake.py replaced by the file in argv[1]
# (another commit's intake, measured beside this one: --old-intake).
OLD_INTAKE = """
import importlib.util, sys
import paywall.widget
spec = importlib.util.spec_from_file_location("paywall.widget.intake", sys.argv.pop(1))
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
paywall.widget.intake = module
from paywall.cli import main
main()
"""


def start_intake(
    url: str, signing_key: str, module: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """The beacon intake as `paywall serve` starts it ([server] events_bind; nice 10): (process,
    port). ``module``: the path of another intake.py to run instead of this tree's."""
    port = access_bench.free_port()
    env = {
        **os.environ,
        "PAYWALL_DATABASE_URL": url,
        "PAYWALL_SIGNING_KEY": signing_key,
        "PAYWALL_LOG_LEVEL": "warning",
        "PAYWALL_EVENTS_BIND": f"127.0.0.1:{port}",
    }
    env.pop("PAYWALL_CONFIG", None)
    run = ["-c", OLD_INTAKE, module] if module else ["-c", "from paywall.cli import main; main()"]
    command = [sys.executable, *run, "experiments", "intake"]
    proc = subprocess.Popen(command, cwd=str(ROOT), env=env, start_new_session=True)
    access_bench.wait_healthy(proc, port, "the intake")
    return proc, port


# The sink arm: a server that does nothing with a beacon but read it and answer 202 (asyncio
# streams, one process at nice 10 like the intake). What access's p99 does beside beacons sent
# there is the cost of the load itself on this machine (the clients and the loopback traffic),
# which no intake can go below.
SINK = """
import asyncio, os, sys
os.nice(10)
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET"):
                writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n")
            else:
                writer.write(b"HTTP/1.1 202 Accepted\\r\\ncontent-length: 0\\r\\n\\r\\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    """The sink arm's server (``SINK``) on a free port: (process, port)."""
    port = access_bench.free_port()
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)], start_new_session=True)
    access_bench.wait_healthy(proc, port, "the sink")
    return proc, port


def event_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM appeal_events").fetchone()
    return int(row[0]) if row else 0


def beacons_closed(port: int, seconds: float, fresh: Callable[[int], list[bytes]]) -> dict[str, float]:
    """Beacons as fast as 2 x 8 connections go: beacons/s (for the server CPU per beacon)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    # Up to 3,000 beacons/s per process: more than the server answers on 2 cores.
    procs = [
        ctx.Process(
            target=beacon_process, args=(port, seconds, 8, 1e6, fresh(int(3000 * seconds)), p + 7, out)
        )
        for p in range(2)
    ]
    for p in procs:
        p.start()
    done = errors = 0
    for _ in procs:
        got, bad, _ = out.get(timeout=seconds + 60)
        done += len(got)
        errors += bad
    for p in procs:
        p.join()
    return {"rps": done / seconds, "seconds": seconds, "errors": errors}


def with_beacons(
    port: int,
    beacon_port: int,
    seconds: float,
    key: str,
    readers: int,
    beacons_per_s: float,
    fresh: Callable[[int], list[bytes]],
    client_nice: int = 0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Access at 500/s and beacons at ``beacons_per_s`` at the same time: (access, beacon latencies)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    each = int(beacons_per_s / 2 * seconds) + 64
    procs = [
        ctx.Process(
            target=beacon_process,
            args=(beacon_port, seconds, 16, beacons_per_s / 2, fresh(each), p + 1, out, client_nice),
        )
        for p in range(2)
    ]
    for p in procs:
        p.start()
    access = access_bench.load(port, "access", seconds, key, readers, rate=500, procs=2, threads=16)
    lat: list[float] = []
    errors = 0
    client_cpu = 0.0
    for _ in procs:
        got, bad, cpu = out.get(timeout=seconds + 60)
        lat.extend(got)
        errors += bad
        client_cpu += cpu
    for p in procs:
        p.join()
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 2 else [0.0] * 99
    return access, {
        "rps": len(lat) / seconds,
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "errors": errors,
        # The load generator's own CPU per beacon, on the same 2 cores (a site's browsers are elsewhere).
        "client_cpu_ms": client_cpu * 1000 / max(len(lat), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=float, default=2000.0, help="appeal events per second")
    parser.add_argument(
        "--beacon", default="4,2", help="events per beacon; several (4,2) are measured in turn in each round"
    )
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="run the beacon load generators at this nice (they stand in for browsers elsewhere; "
        "0, the default, lets them compete with the server as equals)",
    )
    parser.add_argument(
        "--to",
        default="workers,intake",
        help="where the beacons go, each measured in turn in each round: workers (the gunicorn "
        "workers' /support/events), intake (the beacon intake of [server] events_bind) and sink "
        "(a server that records nothing: the cost of the load itself); with --old-intake, "
        "intake-old too",
    )
    parser.add_argument(
        "--old-intake",
        metavar="PATH",
        help="another version of paywall/widget/intake.py (e.g. `git show REV:paywall/widget/intake.py"
        " > /tmp/intake_old.py`), served beside this tree's as the intake-old arm of the same run",
    )
    args = parser.parse_args()
    arms = [arm for arm in args.to.split(",") if arm]
    if args.old_intake and "intake-old" not in arms:
        arms.append("intake-old")
    if not arms or set(arms) - {"workers", "intake", "intake-old", "sink"}:
        parser.error("--to takes workers, intake, sink (and intake-old with --old-intake)")
    if "intake-old" in arms and not args.old_intake:
        parser.error("the intake-old arm needs --old-intake PATH")
    from paywall.signing import generate_pem

    sizes = [int(size) for size in args.beacon.split(",")]
    url = os.environ.get("PAYWALL_BENCH_DATABASE_URL", PG_URL)
    signing_key = generate_pem()
    print(
        f"cores: {os.cpu_count()}; gunicorn workers: {os.environ.get('PAYWALL_WORKERS', 'default (2 x cores + 1)')};"
        f" load average {os.getloadavg()[0]:.2f}; beacons to: {', '.join(arms)}; beacon clients at nice {args.client_nice}"
    )
    print(f"preparing {url.rsplit('/', 1)[1]} ({args.readers} readers)", flush=True)
    key = access_bench.prepare_database(url, args.readers)
    bodies = {size: beacon_bodies(signing_key, size) for size in sizes}

    def fresh(size: int) -> Callable[[int], list[bytes]]:
        # New asks for every phase: the route counts an event once per ask, so a body sent again
        # (in another phase or round) would not be recorded again.
        return lambda count: beacon_bodies(signing_key, size, count)

    for size, some in bodies.items():
        print(f"beacons: {size} events, {statistics.mean(len(b) for b in some):.0f} bytes on average")
    # The beacons come from many readers' addresses, as in life: behind one proxy (X-Forwarded-For,
    # about 100,000 addresses), each far under the default limit per address, which is counted
    # (its cost is in the figures).
    os.environ["PAYWALL__RATELIMIT__PROXY_HOPS"] = "1"
    port = access_bench.free_port()
    proc = access_bench.start_gunicorn(url, port, signing_key)
    intakes = {
        arm: start_sink()
        if arm == "sink"
        else start_intake(url, signing_key, args.old_intake if arm == "intake-old" else None)
        for arm in arms
        if arm != "workers"
    }
    # Where each arm's beacons go: the web workers' port, or an intake's.
    ports = {"workers": port, **{arm: intake[1] for arm, intake in intakes.items()}}
    closed = access_bench.wrk_load if shutil.which("wrk") else access_bench.load
    pgdb = url.rsplit("/", 1)[1]

    def measured(run: Callable[[], dict[str, float]]) -> dict[str, float]:
        # Server CPU per request: gunicorn's, PostgreSQL's and the intakes' (idle or not).
        before = sum(access_bench._cpu_seconds(intake[0].pid) for intake in intakes.values())
        result = access_bench.measured(run, proc.pid, pgdb)
        if intakes:
            done = result["rps"] * result["seconds"]
            after = sum(access_bench._cpu_seconds(intake[0].pid) for intake in intakes.values())
            result["cpu_ms"] += (after - before) * 1000 / max(done, 1)
        return result

    rows: dict[str, list[float]] = {
        "capacity": [], "alone_p50": [], "alone_p99": [], "access_cpu": [], "healthz_cpu": []
    }  # fmt: skip
    phases = [(arm, size) for arm in arms for size in sizes]
    for arm, size in phases:
        for name in ("with_p50", "with_p99", "rise", "events_s", "beacon_p99", "beacon_cpu", "beacon_rps"):
            rows[f"{name}/{arm}/{size}"] = []
    try:
        access_bench.load(port, "access", 2, key, args.readers)  # warm-up
        for arm in arms:
            with_beacons(port, ports[arm], 2, key, args.readers, 50, fresh(sizes[0]))
        for n in range(1, args.rounds + 1):
            capacity = measured(lambda: closed(port, "access", args.seconds / 2, key, args.readers))
            # The floor of any request on this server: GET /healthz, closed loop, its CPU.
            health = measured(lambda: closed(port, "healthz", args.seconds / 2, key, args.readers))
            alone = access_bench.load(
                port, "access", args.seconds, key, args.readers, rate=500, procs=2, threads=16
            )
            rows["healthz_cpu"].append(health["cpu_ms"])
            rows["capacity"].append(capacity["rps"])
            rows["alone_p50"].append(alone["p50"])
            rows["alone_p99"].append(alone["p99"])
            rows["access_cpu"].append(capacity["cpu_ms"])
            line = (
                f"  round {n}: access capacity {capacity['rps']:.0f} req/s ({capacity['cpu_ms']:.2f} ms CPU;"
                f" healthz {health['cpu_ms']:.2f} ms)"
                f" | @500/s alone p50 {alone['p50']:.1f} ms p99 {alone['p99']:.1f} ms"
            )
            errors = alone["errors"]
            # Alternate the arms' order from round to round, so neither always runs on a warmer machine.
            for arm, size in phases if n % 2 else phases[::-1]:
                some = fresh(size)
                beacon_port = ports[arm]
                beacon_cpu = measured(
                    lambda some=some, bp=beacon_port: beacons_closed(bp, args.seconds / 2, some)
                )
                time.sleep(0.5)  # the closed loop's last buffered events land before the count
                before = event_rows(url)
                both, beacons = with_beacons(
                    port,
                    beacon_port,
                    args.seconds,
                    key,
                    args.readers,
                    args.events / size,
                    some,
                    args.client_nice,
                )
                time.sleep(0.5)  # the workers write their buffered events every 50 ms
                recorded = (event_rows(url) - before) / args.seconds
                rise = both["p99"] / alone["p99"] - 1
                for name, value in (
                    ("with_p50", both["p50"]),
                    ("with_p99", both["p99"]),
                    ("rise", rise),
                    ("events_s", recorded),
                    ("beacon_p99", beacons["p99"]),
                    ("beacon_cpu", beacon_cpu["cpu_ms"]),
                    ("beacon_rps", beacon_cpu["rps"]),
                ):
                    rows[f"{name}/{arm}/{size}"].append(value)
                errors += both["errors"] + beacons["errors"] + beacon_cpu["errors"]
                line += (
                    f"\n    {arm}, {size}-event beacons: closed loop {beacon_cpu['rps']:.0f}/s ({beacon_cpu['cpu_ms']:.2f} ms CPU)"
                    f" | with them p50 {both['p50']:.1f} ms p99 {both['p99']:.1f} ms (rise {rise:+.1%})"
                    f" | beacons {beacons['rps']:.0f}/s p99 {beacons['p99']:.1f} ms"
                    f" (client CPU {beacons['client_cpu_ms']:.2f} ms each), events recorded {recorded:.0f}/s"
                )
            print(f"{line} | errors {errors}", flush=True)
    finally:
        access_bench.stop(proc)
        for intake in intakes.values():
            intake[0].terminate()
            intake[0].wait(timeout=30)
    med = {name: statistics.median(values) for name, values in rows.items()}
    print(
        f"median of {args.rounds}: access capacity {med['capacity']:.0f} req/s (500/s = {500 / med['capacity']:.0%});"
        f" server CPU (app + PostgreSQL) per access check {med['access_cpu']:.2f} ms, per healthz {med['healthz_cpu']:.2f} ms;"
        f" @500/s p99 alone {med['alone_p99']:.1f} ms",
        flush=True,
    )
    for arm, size in phases:
        k = f"{arm}/{size}"
        rises = rows[f"rise/{k}"]
        print(
            f"  {arm}, {size} events per beacon, {args.events:.0f} events/s offered: p99 with them {med[f'with_p99/{k}']:.1f} ms:"
            f" rise {med[f'rise/{k}']:+.1%} (range {min(rises):+.1%}..{max(rises):+.1%});"
            f" events recorded {med[f'events_s/{k}']:.0f}/s; beacon p99 {med[f'beacon_p99/{k}']:.1f} ms;"
            f" server CPU per beacon {med[f'beacon_cpu/{k}']:.2f} ms"
            f" ({med[f'beacon_cpu/{k}'] / size:.2f} ms per event); beacons closed loop {med[f'beacon_rps/{k}']:.0f}/s",
            flush=True,
        )
    if "intake" in arms and "intake-old" in arms:
        for size in sizes:
            # Per round (same machine load for both), then the median of the ratios.
            new, old = rows[f"beacon_cpu/intake/{size}"], rows[f"beacon_cpu/intake-old/{size}"]
            ratios = [a / b for a, b in zip(new, old, strict=True) if b]
            if ratios:
                print(
                    f"  intake / intake-old server CPU per {size}-event beacon: median of rounds"
                    f" {statistics.median(ratios):.2f} (range {min(ratios):.2f}..{max(ratios):.2f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
