"""``paywall serve`` with its applier: gunicorn and one ``paywall stripe apply`` side by side.

One command is a complete service: the web processes record Stripe's events and answer at once,
the applier beside them syncs what was recorded. This process only watches the two children:

- signals for the server (SIGHUP to reload, SIGTTIN/SIGTTOU to add or remove web workers,
  SIGUSR1 to reopen logs, SIGUSR2 to upgrade) go to gunicorn; SIGTERM, SIGINT and SIGQUIT go to
  both, and this process exits with gunicorn's status once both have stopped;
- an applier that dies is started again (after a pause that grows while it keeps dying), since
  nothing is lost meanwhile: the events wait in the inbox;
- gunicorn exiting ends the service: the applier is stopped too.

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


def serve_with_applier(server_args: list[str], *, poll_seconds: float = 0.5) -> int:
    """Run gunicorn (``server_args``) and the applier until gunicorn exits; its exit status."""
    server = subprocess.Popen(server_args)  # noqa: S603 - our own interpreter and arguments
    applier: subprocess.Popen[bytes] | None = None
    stopping = False
    restarts = 0
    started = next_start = 0.0

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in TO_BOTH:
            stopping = True
            if applier is not None and applier.poll() is None:
                applier.send_signal(signal.SIGTERM)
        if server.poll() is None:
            server.send_signal(signum)

    for sig in (*TO_SERVER, *TO_BOTH):
        signal.signal(sig, forward)
    try:
        while server.poll() is None:
            now = time.monotonic()
            if not stopping and (applier is None or applier.poll() is not None) and now >= next_start:
                if applier is not None:
                    # A crash loop (say, the database refuses logins) backs off up to a minute
                    # between starts; an applier that ran for a while starts again at once.
                    restarts = restarts + 1 if now - started < 60 else 0
                    log.warning("stripe applier exited with %s; starting it again", applier.returncode)
                applier = subprocess.Popen(applier_command())  # noqa: S603
                started, next_start = now, now + min(60.0, 2.0**restarts)
            time.sleep(poll_seconds)
    finally:
        if applier is not None and applier.poll() is None:
            applier.send_signal(signal.SIGTERM)
            try:
                applier.wait(timeout=30)
            except subprocess.TimeoutExpired:
                applier.kill()
                applier.wait()
    return server.returncode if server.returncode >= 0 else 128 - server.returncode
