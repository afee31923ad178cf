"""Running a local HTTP server (the app under werkzeug, a stand-in) in a thread for one test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import TypeVar

S = TypeVar("S", bound=BaseServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """Serve in a daemon thread; on exit stop at once, close the socket and join the thread.

    ``shutdown()`` waits for serve_forever's next poll: 0.5 s by default, which idled every test
    that started a server; a 10 ms poll costs nothing measurable while it runs."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
