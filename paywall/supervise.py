"""``paywall serve`` with its helpers: gunicorn, the ``paywall stripe apply`` appliers and, with
``[server] events_bind``, the beacon intake (``paywall experiments intake``), side by side.

One command is a complete service: the web processes record Stripe's events and answer at once,
the applier beside them syncs what was recorded. This process only watches the two children:

- signals for the server (SIGHUP to reload, SIGTTIN/SIGTTOU to add or remove web workers,
  SIGUSR1 to reopen logs, SIGUSR2 to upgrade) go to gunicorn; SIGTERM, SIGINT and SIGQUIT go to
  both, and this process exits with gunicorn's status once both have stopped;
- an applier that dies is started again (after a pause that grows while it keeps dying), since
  nothing is lost meanwhile: the events wait in the inbox; so is the intake (the widget's beacons
  sent meanwhile are lost: nothing depends on one; the web workers' /support/events still works);
- gunicorn exiting ends the service: the applier and the intake are stopped too.

Why not a thread in gunicorn: the workers fork, and a thread in the master would be copied
mid-lock into every worker; a thread in each worker would take the GIL from the requests that
Stripe and readers are waiting on. A process of its own keeps the two apart, and it is the
same program an operator runs to scale out (``paywall stripe apply``).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger(__name__)

TO_SERVER = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
TO_BOTH = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


# On the server's own machine the applier yields the CPU to the web workers: a reader waiting for
# an article and Stripe waiting for its 2xx come first, and a burst of events is applied a moment
# later instead (the lag is on /metrics). Workers on machines of their own run at full priority.
APPLIER_NICE = 10


def intake_command(bind: str) -> list[str]:
    """This interpreter running ``paywall experiments intake`` on ``bind`` (nice: its own default)."""
    return [
        sys.executable,
        "-c",
        "from paywall.cli import main; main()",
        "experiments",
        "intake",
        "--bind",
        bind,
    ]


def applier_command() -> list[str]:
    """This interpreter running ``paywall stripe apply`` (the same install, the same settings)."""
    return [
        sys.executable,
        "-c",
        "from paywall.cli import main; main()",
        "stripe",
        "apply",
        "--nice",
        str(APPLIER_NICE),
    ]


class _Child:
    """One helper process slot (an applier, the intake): started, watched, started again after a
    pause that grows while it keeps dying (say, the database refuses logins), stopped with the
    server."""

    def __init__(self, command: list[str], name: str) -> None:
        self.command = command
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started = self.next_start = 0.0

    def keep_running(self, now: float) -> None:
        if (self.proc is not None and self.proc.poll() is None) or now < self.next_start:
            return
        if self.proc is not None:
            # An applier that ran for a while starts again at once; a crash loop backs off.
            self.restarts = self.restarts + 1 if now - self.started < 60 else 0
            log.warning("%s exited with %s; starting it again", self.name, self.proc.returncode)
        self.proc = subprocess.Popen(self.command)  # noqa: S603 - our own interpreter
        self.started, self.next_start = now, now + min(60.0, 2.0**self.restarts)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_with_applier(
    server_args: list[str], *, appliers: int = 1, events_bind: str = "", poll_seconds: float = 0.5
) -> int:
    """Run gunicorn (``server_args``), ``appliers`` appliers and, with ``events_bind``, the beacon
    intake until gunicorn exits; its exit status."""
    server = subprocess.Popen(server_args)  # noqa: S603 - our own interpreter and arguments
    slots = [_Child(applier_command(), "stripe applier") for _ in range(appliers)]
    if events_bind:
        slots.append(_Child(intake_command(events_bind), "appeal events intake"))
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in TO_BOTH:
            stopping = True
            for slot in slots:
                slot.terminate()
        if server.poll() is None:
            server.send_signal(signum)

    for sig in (*TO_SERVER, *TO_BOTH):
        signal.signal(sig, forward)
    try:
        while server.poll() is None:
            if not stopping:
                for slot in slots:
                    slot.keep_running(time.monotonic())
            time.sleep(poll_seconds)
    finally:
        for slot in slots:
            slot.terminate()
        for slot in slots:
            slot.wait()
    return server.returncode if server.returncode >= 0 else 128 - server.returncode
