"""Does a wave of sign-ins slow the access check? Access p99 alone vs beside 50 sign-ins per second.

    .venv/bin/python bench/signin.py                       # SQLite and PostgreSQL, 10 s per phase
    .venv/bin/python bench/signin.py --db postgresql --rounds 5

A sign-in request (POST /v1/signin) issues a code, stores its hashes and queues a mail in one
transaction: on SQLite every such write serialises with the meter writes of the access checks, so
this is the interaction worth measuring. For each database, on the 100,000-reader database of
bench/access.py under gunicorn with config/gunicorn.conf.py, in --rounds interleaved rounds:

1. POST /v1/access paced at --rate (300/s), alone: p50 and p99 (latency from the scheduled send);
2. the same while another process sends GET /healthz at --signins per second: the control, what
   any extra client and requests cost the access tail on this machine;
3. the same while that process sends POST /v1/signin paced at --signins (50/s) for distinct
   addresses: the access p50 and p99 again, and the sign-ins' own p99.

The reported figure is the median over rounds of (p99 with sign-ins) / (p99 alone); the issue's
bar is 1.10. Rate limits are lifted for the run (the bench client is one address).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import access as access_bench  # noqa: E402 - bench/access.py, beside this file


def signin_process(port: int, seconds: float, rate: float, key: str, out: Any, control: bool = False) -> None:
    """Paced POST /v1/signin for distinct addresses (or, ``control``, GET /healthz at the same pace);
    puts (latencies, unexpected answers) on ``out``."""
    threads, lat, bad = 8, [], [0]
    lock = threading.Lock()
    start_at = time.monotonic() + 0.2

    def run(tid: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        interval, n, mine, errors = threads / rate, 0, [], 0
        while True:
            scheduled = start_at + n * interval + tid * interval / threads
            if scheduled >= start_at + seconds:
                break
            if scheduled > time.monotonic():
                time.sleep(scheduled - time.monotonic())
            body = json.dumps({"email": f"bench-{os.getpid()}-{tid}-{n}@example.org"})
            try:
                if control:
                    conn.request("GET", "/healthz")
                else:
                    conn.request("POST", "/v1/signin", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                errors += resp.status != (200 if control else 202)
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.monotonic() - scheduled)
            n += 1
        with lock:
            lat.extend(mine)
            bad[0] += errors

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, bad[0]))


def p99(lat: list[float]) -> float:
    return statistics.quantiles(sorted(lat), n=100, method="inclusive")[98] * 1000 if len(lat) > 2 else 0.0


def bench(label: str, url: str, args: argparse.Namespace, signing_key: str) -> float:
    print(f"{label}: preparing", flush=True)
    key = access_bench.prepare_database(url, args.readers)
    port = access_bench.free_port()
    os.environ["PAYWALL__RATELIMIT__ENABLED"] = "false"
    proc = access_bench.start_gunicorn(url, port, signing_key)
    ratios: list[float] = []
    controls: list[float] = []
    try:
        access_bench.load(port, "access", 2, key, args.readers)  # warm-up
        for n in range(1, args.rounds + 1):
            alone = access_bench.load(port, "access", args.seconds, key, args.readers, rate=args.rate)
            control, control_lat, control_bad = beside_load(port, args, key, control=True)
            beside, signin_lat, signin_bad = beside_load(port, args, key, control=False)
            ratio = beside["p99"] / alone["p99"] if alone["p99"] else 0.0
            ratios.append(ratio)
            controls.append(control["p99"] / alone["p99"] if alone["p99"] else 0.0)
            print(
                f"  round {n}: access @{args.rate:g}/s alone p50 {alone['p50']:.1f} ms p99 {alone['p99']:.1f} ms"
                f" | beside {len(control_lat) / args.seconds:.0f} healthz/s p99 {control['p99']:.1f} ms"
                f" (ratio {controls[-1]:.2f}) | beside {len(signin_lat) / args.seconds:.0f} sign-ins/s"
                f" p50 {beside['p50']:.1f} ms p99 {beside['p99']:.1f} ms (ratio {ratio:.2f});"
                f" sign-in p99 {p99(signin_lat):.1f} ms,"
                f" errors {alone['errors'] + control['errors'] + beside['errors'] + signin_bad + control_bad}",
                flush=True,
            )
    finally:
        access_bench.stop(proc)
    median = statistics.median(ratios)
    print(
        f"  {label} median of {args.rounds}: access p99 with sign-ins / alone = {median:.2f};"
        f" with the same pace of GET /healthz / alone = {statistics.median(controls):.2f} (the machine's share)",
        flush=True,
    )
    return median


def beside_load(
    port: int, args: argparse.Namespace, key: str, *, control: bool
) -> tuple[dict[str, float], list[float], int]:
    """The paced access load while another process sends sign-ins (or, ``control``, healthz)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    side = ctx.Process(target=signin_process, args=(port, args.seconds, args.signins, key, out, control))
    side.start()
    result = access_bench.load(port, "access", args.seconds, key, args.readers, rate=args.rate)
    lat, bad = out.get(timeout=args.seconds + 60)
    side.join()
    return result, lat, bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="access checks per second")
    parser.add_argument("--signins", type=float, default=50.0, help="sign-in requests per second")
    parser.add_argument("--readers", type=int, default=access_bench.READERS)
    args = parser.parse_args()

    from paywall.signing import generate_pem

    signing_key = generate_pem()
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            bench("SQLite", f"sqlite:///{tmp}/bench.sqlite3", args, signing_key)
    if args.db in ("postgresql", "both"):
        bench(
            "PostgreSQL", os.environ.get("PAYWALL_BENCH_DATABASE_URL", access_bench.PG_URL), args, signing_key
        )


if __name__ == "__main__":
    main()
