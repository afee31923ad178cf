"""The beacon intake: ``POST /support/events`` served by a small process of its own, at a lower
scheduling priority than the web workers (``[server] events_bind``; ``paywall serve`` starts it).

Why a process of its own: a page view is one access check and one or two beacons, and the
beacons are bulk (nobody waits for their answer) while the access check is what a reader waits
for. Served by the same gunicorn workers, 2,000 events a second took 0.4-0.8 of a core from the
access check, and its p99 at 500 checks/s went from 135 ms to seconds (docs/experiments.md,
"Benchmark"). Here the beacons cost a fraction of a gunicorn request (no worker thread hand-off,
no gunicorn request parsing: an asyncio protocol reads the request and calls the same handler),
and at ``nice`` 10 the kernel gives the CPU to the web workers first: under contention the
beacons wait, the access check does not. The main server's ``/support/events`` keeps working
(single-port setups, and beacons from pages loaded before the switch).

HTTP here is deliberately small: HTTP/1.1 (and 1.0) requests with a ``Content-Length`` body (what
``navigator.sendBeacon`` and ``fetch`` send, and what a reverse proxy forwards), keep-alive, and
``Expect: 100-continue``. A chunked body gets ``411``, a head over 16 KiB ``431``, a malformed
request line ``400``; each closes the connection. Every answer to a well-formed request is the
one paywall/widget/events.py gives (origin check, CORS, the limit per address, the error shape),
since the same ``EventsEndpoint`` answers it through paywall/front.py. ``GET /healthz`` answers
``{"status": "ok"}`` for a load balancer; any other path is a ``404``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask

from paywall import front
from paywall.errors import ApiError
from paywall.experiments.events import writer_of
from paywall.widget.events import MAX_BODY_BYTES, EventsEndpoint

log = logging.getLogger(__name__)

# The intake yields the CPU to the web workers on the same machine (as the Stripe applier does).
INTAKE_NICE = 10
MAX_HEAD_BYTES = 16 * 1024
# An idle keep-alive connection is closed after this long (gunicorn's keepalive is 5 s).
KEEPALIVE_SECONDS = 5.0
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def intake_app(app: Flask) -> WSGIApp:
    """The WSGI app the intake serves: the events route and a liveness probe, else 404."""

    def not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body, headers = front.problem(ApiError(404, "Only /support/events is served here."))
        start_response(f"{status} Not Found", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    routes = front.FrontRoutes(not_found)
    routes.add(EventsEndpoint(app).route())
    routes.add(front.Route("/healthz", {"GET": lambda _environ: front.json_answer(200, {"status": "ok"})}))
    return routes


class _Request(Exception):
    """A request this server refuses before the app sees it (status, detail); the connection closes."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IntakeProtocol(asyncio.Protocol):
    """One client connection: requests parsed from the buffer as they complete, answered in order."""

    def __init__(self, app: WSGIApp, server_port: int) -> None:
        self.app = app
        self.server_port = str(server_port)
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.last_active = time.monotonic()
        self.continued = False  # a 100 Continue was sent for the request being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        CONNECTIONS.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        CONNECTIONS.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.buffer += data
        try:
            while self.transport is not None and self._one_request():
                pass
        except _Request as refused:
            self._refuse(refused)

    def _one_request(self) -> bool:
        """Answer the first complete request in the buffer; False when it is not complete yet."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise _Request(431, "The request head is too large.")
            return False
        if end > MAX_HEAD_BYTES:
            raise _Request(431, "The request head is too large.")
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Request(400, "Malformed request line.")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Request(400, "Malformed header line.")
            key = name.upper().replace("-", "_")
            value = value.strip()
            # Repeated headers are joined as WSGI servers do (X-Forwarded-For from several proxies).
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "TRANSFER_ENCODING" in headers:
            raise _Request(411, "Send the body with a Content-Length.")
        try:
            length = int(headers.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _Request(400, "Content-Length is not a number.") from None
        if length < 0:
            raise _Request(400, "Content-Length is not a number.")
        if length > MAX_BODY_BYTES:
            # The same 413 the route gives, without reading a body we would throw away.
            raise _Request(413, "The request body is too large.")
        start = end + 4
        if len(self.buffer) < start + length:
            if headers.get("EXPECT", "").lower() == "100-continue" and not self.continued:
                self.continued = True
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        self.continued = False
        keep_alive = self._keep_alive(version, headers.get("CONNECTION", ""))
        self._answer(method, target, version, headers, body, keep_alive)
        if not keep_alive:
            self._close()  # and nothing pipelined after it is read
        return True

    @staticmethod
    def _keep_alive(version: str, connection: str) -> bool:
        tokens = {t.strip().lower() for t in connection.split(",")}
        return "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens

    def _answer(
        self, method: str, target: str, version: str, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": version,
            "SERVER_NAME": "paywall-intake",
            "SERVER_PORT": self.server_port,
            "REMOTE_ADDR": self.peer,
            "CONTENT_TYPE": headers.pop("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": headers.pop("CONTENT_LENGTH", ""),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        for key, value in headers.items():
            environ[f"HTTP_{key}"] = value
        started: list[Any] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            started[:] = [status, response_headers]

        chunks = b"".join(self.app(environ, start_response))
        status, response_headers = started
        head = [f"HTTP/1.1 {status}"]
        head += [f"{name}: {value}" for name, value in response_headers]
        if not keep_alive:
            head.append("Connection: close")
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + chunks)

    def _refuse(self, refused: _Request) -> None:
        status, body, headers = front.problem(ApiError(refused.status, refused.detail))
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers]
        head.append(f"Content-Length: {len(body)}")
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self._close()

    def _close(self) -> None:
        # The transport sends what was written, then closes; this side is done with it now.
        if self.transport is not None:
            self.transport.close()
            self.transport = None
            CONNECTIONS.discard(self)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


CONNECTIONS: set[IntakeProtocol] = set()


async def _close_idle(stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        cutoff = time.monotonic() - KEEPALIVE_SECONDS
        for conn in list(CONNECTIONS):
            if conn.last_active < cutoff and conn.transport is not None:
                conn.transport.close()


async def serve(
    app: Flask,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the intake on host:port until ``stop`` is set (by default: SIGTERM or SIGINT); the
    events buffered are written before it returns. ``ready`` gets the port once listening (tests
    bind port 0)."""
    loop = asyncio.get_running_loop()
    writer = writer_of(app)
    writer.start()
    wsgi = intake_app(app)
    holder: dict[str, int] = {}
    server = await loop.create_server(
        lambda: IntakeProtocol(wsgi, holder["port"]), host, port, reuse_address=True, backlog=1024
    )
    holder["port"] = server.sockets[0].getsockname()[1]
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    log.info("appeal events intake listening on %s:%d", host, holder["port"])
    if ready is not None:
        ready(holder["port"])
    sweeper = asyncio.create_task(_close_idle(stop))
    try:
        await stop.wait()
    finally:
        server.close()
        for conn in list(CONNECTIONS):
            if conn.transport is not None:
                conn.transport.close()
        await server.wait_closed()
        sweeper.cancel()
        # The flush is a database write: off the loop, which has nothing left to do anyway.
        await asyncio.to_thread(writer.close)
        log.info("appeal events intake stopped; %d events lost to failed writes", writer.lost)


def run(app: Flask, bind: str, nice: int = INTAKE_NICE) -> None:
    """``paywall experiments intake``: lower this process's priority by ``nice``, then serve."""
    host, _, port = bind.rpartition(":")
    if nice:
        os.nice(nice)
    asyncio.run(serve(app, host or "127.0.0.1", int(port)))
