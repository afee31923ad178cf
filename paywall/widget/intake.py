"""The beacon intake: ``POST /support/events`` served by a small process of its own, at a lower
scheduling priority than the web workers (``[server] events_bind``; ``paywall serve`` starts it).

Why a process of its own: a page view is one access check and one or two beacons, and the
beacons are bulk (nobody waits for their answer) while the access check is what a reader waits
for. Served by the same gunicorn workers, 2,000 events a second took 0.4-0.8 of a core from the
access check, and its p99 at 500 checks/s went from 135 ms to seconds (docs/experiments.md,
"Benchmark"). Here the beacons cost a fraction of a gunicorn request (no worker thread hand-off:
one event loop reads the requests and calls the same handler), and at ``nice`` 10 the kernel gives
the CPU to the web workers first: under contention the beacons wait, the access check does not.
The main server's ``/support/events`` keeps working (single-port setups, and beacons from pages
loaded before the switch).

HTTP is uvicorn's, with the ``httptools`` parser (llhttp, Node's): request framing, keep-alive,
pipelining, ``Expect: 100-continue`` and the refusal of malformed or ambiguous requests (a 400 that
closes) are a parser facing the internet, which we do not hand-write. What is ours is the small
ASGI callable below: it builds the WSGI environ the handler reads (headers, the body up to
``MAX_BODY_BYTES``, the peer address; ``X-Forwarded-For`` is left to the handler's ``proxy_hops``,
so uvicorn's proxy headers are off) and calls the same ``EventsEndpoint`` through paywall/front.py,
so every answer is the route's own (origin check, CORS, the limit per address, the error shape).
``GET /healthz`` answers ``{"status": "ok"}`` for a load balancer; any other path is a ``404``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

import uvicorn
from flask import Flask
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paywall import front
from paywall.errors import ApiError
from paywall.experiments.events import writer_of
from paywall.widget.events import MAX_BODY_BYTES, EventsEndpoint

log = logging.getLogger(__name__)

# The intake yields the CPU to the web workers on the same machine (as the Stripe applier does).
INTAKE_NICE = 10
# An idle keep-alive connection is closed after this long (gunicorn's keepalive is 5 s).
KEEPALIVE_SECONDS = 5
# Connections (and requests in progress) beyond this get uvicorn's 503 rather than a file
# descriptor each: under the usual 1,024 descriptors a process may open, with room for the
# database and the log. A browser holds one or two kept-alive connections; a proxy a pool.
MAX_CONNECTIONS = 900
# The limits uvicorn's httptools protocol does not set: llhttp buffers a request head of any size
# and waits for it for ever (a slowloris holds a connection slot with a byte a minute).
MAX_HEAD_BYTES = 16 * 1024
HEAD_SECONDS = 10
# On SIGTERM, requests in progress get this long to finish before their connections are cut.
GRACEFUL_SECONDS = 5
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


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class IntakeASGI:
    """ASGI around the intake's WSGI app: one request's environ built from uvicorn's scope, the
    app called on the loop (its work is parsing and buffering: no I/O), its answer sent back."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            key = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            # Repeated headers are joined as WSGI servers do (X-Forwarded-For from several proxies).
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body, whole = await self._body(headers.get("CONTENT_LENGTH", ""), receive)
        client = scope.get("client")
        server = scope.get("server")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
            "SERVER_NAME": "paywall-intake",
            "SERVER_PORT": str(server[1]) if server else "",
            "REMOTE_ADDR": client[0] if client else "",
            "CONTENT_TYPE": headers.pop("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": headers.pop("CONTENT_LENGTH", ""),
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,  # read whole above (a chunked body has no length)
            "wsgi.url_scheme": scope.get("scheme", "http"),
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
        if not whole:
            # The rest of a body over the limit is not worth reading: close instead.
            response_headers = [*response_headers, ("Connection", "close")]
        await send(
            {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response_headers],
            }
        )
        await send({"type": "http.response.body", "body": chunks})

    @staticmethod
    async def _body(content_length: str, receive: Receive) -> tuple[bytes, bool]:
        """The request body and whether it was read whole. It is read only as far as the route's
        limit needs: not at all when the declared length is over it (the route answers 413 from
        the header, and no 100 Continue invites the body), else up to one byte past the limit (a
        chunked body has no length)."""
        with contextlib.suppress(ValueError):  # the parser refuses a malformed Content-Length
            if int(content_length or 0) > MAX_BODY_BYTES:
                return b"", False
        body = bytearray()
        while len(body) <= MAX_BODY_BYTES:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                return bytes(body), True
        return bytes(body), False


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with two limits on a request head: its size (a 431 that closes)
    and the time it may take to arrive (the connection is closed).

    The size is counted twice, each count never above the head's true size (so a head within the
    limit is never refused): the request line and headers as the parser hands them over, and the
    reads that arrive while a head is still incomplete (a header line that never ends is buffered
    by the parser, not handed over). The read that ends one request and starts the next head is not
    in the second count, so the buffered head is bounded by ``MAX_HEAD_BYTES`` plus one read."""

    _in_body = False
    _head_bytes = 0  # handed over by the parser, this request
    _head_reads = 0  # read while the head is incomplete
    _head_too_large = False
    _heads = 0  # heads completed on this connection
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head, heads = not self._in_body, self._heads
        super().data_received(data)
        # All of this read was head: no head was completed in it (nor body read).
        if in_head and heads == self._heads and not self.transport.is_closing():
            self._head_reads += len(data)
            if self._head_reads > MAX_HEAD_BYTES:
                self._head_too_large = True
                self.send_400_response("")

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            # httptools turns this into the HttpParserError on which uvicorn calls send_400_response.
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._heads += 1
        self._head_reads = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._await_head()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        _, body, headers = front.problem(ApiError(431, "The request head is too large."))
        head = [
            b"HTTP/1.1 431 Request Header Fields Too Large",
            *(f"{name}: {value}".encode("latin-1") for name, value in headers),
            f"content-length: {len(body)}".encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        # Not a request yet (or an idle keep-alive connection uvicorn closes sooner): nobody to answer.
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT left to ``serve``: uvicorn re-raises a signal it
    caught once it has stopped, which would end the process before the Writer is flushed."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: Flask) -> uvicorn.Config:
    """The uvicorn configuration of the intake (its socket is bound by ``listening_socket``)."""
    return uvicorn.Config(
        IntakeASGI(intake_app(app)),
        http=_Protocol,  # httptools (llhttp), with the head limits above
        ws="none",
        lifespan="off",
        # The handler reads X-Forwarded-For itself ([ratelimit] proxy_hops), as the web workers do.
        proxy_headers=False,
        access_log=False,
        log_config=None,  # the process's own logging (JSON lines), not uvicorn's
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEPALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        backlog=1024,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """The intake's socket, bound here (not by uvicorn) so that port 0 can be told to the caller."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that name it, and
    # without it uvicorn's answer (head and body: two writes) waits for the client's delayed ACK,
    # 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


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
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    server = _Server(config(app))
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        while not server.started and not server.should_exit:
            await asyncio.sleep(0.01)
        if server.started:
            log.info("appeal events intake listening on %s:%d", host, bound)
            if ready is not None:
                ready(bound)
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        sock.close()
        # The flush is a database write: off the loop, which has nothing left to do anyway.
        await asyncio.to_thread(writer.close)
        log.info("appeal events intake stopped; %d events lost to failed writes", writer.lost)


def run(app: Flask, bind: str, nice: int = INTAKE_NICE) -> None:
    """``paywall experiments intake``: lower this process's priority by ``nice``, then serve."""
    host, _, port = bind.rpartition(":")
    if nice:
        os.nice(nice)
    asyncio.run(serve(app, host.strip("[]") or "127.0.0.1", int(port)))
