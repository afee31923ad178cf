"""``paywall serve`` as one complete service: gunicorn records Stripe's events, the applier beside
it applies them, comes back when killed, and stops with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from paywall.db import Database
from tests.conftest import WEBHOOK_SECRET
from tests.support.faults import free_port, wait_healthy
from tests.support.processes import children_running
from tests.support.stripe_events import body_of, load_scenario, sign


def appliers_under(pid: int) -> list[int]:
    """The ``paywall stripe apply`` processes whose parent is ``pid``."""
    return children_running(pid, b"stripe", b"apply")


def wait_for(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def post(base: str, event: dict[str, Any]) -> bytes:
    body = body_of(event)
    req = urllib.request.Request(
        f"{base}/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


def statuses(db: Database) -> dict[str, str]:
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT stripe_event_id, status FROM stripe_events").all()
        conn.rollback()
    return {str(event_id): str(status) for event_id, status in rows}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_serve_applies_restarts_its_applier_and_stops_whole(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    url = f"sqlite:///{tmp_path}/paywall.sqlite3"
    env.update(PAYWALL_DATABASE_URL=url, PAYWALL_WORKERS="1", PAYWALL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    paywall = [sys.executable, "-m", "paywall.cli"]
    subprocess.run([*paywall, "db", "upgrade"], env=env, check=True, cwd=tmp_path, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [*paywall, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    db = Database(url)
    first, second = load_scenario("one_time_donation_checkout")[:2]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, seconds=60)
        assert b'"queued"' in post(base, first)
        wait_for(lambda: statuses(db).get(first["id"]) == "processed")

        (applier,) = wait_for(lambda: appliers_under(proc.pid))
        os.kill(applier, signal.SIGKILL)
        restarted = wait_for(lambda: [p for p in appliers_under(proc.pid) if p != applier])
        assert len(restarted) == 1
        assert b'"queued"' in post(base, second)
        wait_for(lambda: statuses(db).get(second["id"]) == "processed")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not appliers_under(proc.pid)
        assert (
            not Path(f"/proc/{restarted[0]}/cmdline").exists()
            or not Path(f"/proc/{restarted[0]}/cmdline").read_bytes()
        ), "the applier stopped with the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        db.dispose()
