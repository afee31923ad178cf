"""The beacon intake (paywall/widget/intake.py): POST /support/events served by a process of its
own, answering exactly as the web workers' route does, over uvicorn's HTTP/1.1 (keep-alive,
pipelining, requests split across packets, Expect: 100-continue, chunked bodies), with what it
refuses pinned (uvicorn's 400 for what llhttp will not parse, the route's 413 for a body over the
limit, our 431 and timeout for a request head), the events written when it stops; and ``paywall
serve`` starting it, at a lower priority."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paywall.app import create_app
from paywall.config import ConfigError, Settings
from paywall.db import Database
from paywall.widget import intake
from tests.support.faults import free_port, wait_healthy
from tests.support.processes import children_running, nice_of
from tests.widget.test_events import ask, asks, rows

ORIGIN = "https://news.example.org"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(appeal={"max_asks": 3}, server={"allowed_origins": [ORIGIN]})


@pytest.fixture
def served(settings: Settings, db: Database) -> Iterator[int]:
    """The intake on a free port, in a thread of its own with its own event loop; stopped (and its
    buffered events written) at the end of the test, or by ``stop_intake``."""
    app = create_app(settings, db=db)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    port: list[int] = []
    ready = threading.Event()

    def ran(bound: int) -> None:
        port.append(bound)
        ready.set()

    thread = threading.Thread(
        target=lambda: loop.run_until_complete(intake.serve(app, "127.0.0.1", 0, stop=stop, ready=ran))
    )
    thread.start()
    assert ready.wait(10)

    def stop_it() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)

    STOPS[port[0]] = stop_it
    try:
        yield port[0]
    finally:
        STOPS.pop(port[0])()
        loop.close()


STOPS: dict[int, Callable[[], Any]] = {}


def stop_intake(port: int) -> None:
    STOPS[port]()


def post(conn: http.client.HTTPConnection, events: list[dict[str, Any]], **headers: str) -> Any:
    headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
    conn.request("POST", "/support/events", body=json.dumps({"events": events}), headers=headers)
    resp = conn.getresponse()
    # resp.msg: header names are case-insensitive (uvicorn writes them in lower case).
    return resp.status, resp.msg, json.loads(resp.read() or b"null")


def raw(port: int, data: bytes, *, pause: float = 0.0, parts: int = 1, half_close: bool = True) -> bytes:
    """Send ``data`` (in ``parts`` pieces, ``pause`` s apart) and read until the server closes.

    ``half_close``: shut this side for writing once sent. uvicorn then closes the connection as soon
    as it has read the end, dropping pipelined requests not answered yet, so a pipelining test
    leaves it open and ends with a request that asks to close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        step = -(-len(data) // parts)
        for start in range(0, len(data), step):
            sock.sendall(data[start : start + step])
            time.sleep(pause)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_beacons_are_recorded_over_one_kept_alive_connection(
    served: int, settings: Settings, db: Database
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=5)
    first, second = ask(settings, subject="reader-1"), ask(settings, subject="reader-2")
    status, headers, body = post(
        conn, [{"ask": first, "type": "view"}, {"ask": first, "type": "impression"}], Origin=ORIGIN
    )
    assert (status, body) == (202, {"recorded": 2, "dropped": 0})
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Request-ID"]
    assert "Connection" not in headers  # kept alive
    status, _, body = post(conn, [{"ask": second, "type": "view"}, {"ask": "forged", "type": "view"}])
    assert (status, body) == (202, {"recorded": 1, "dropped": 1})
    conn.close()
    stop_intake(served)  # a clean stop writes what the intake buffered
    recorded = rows(db)
    assert sorted(r.type for r in recorded) == ["impression", "view", "view"]
    assert {r.variant for r in recorded} == {"urgent"}
    assert [a.subject for a in asks(db)] == ["reader-1"]  # the impression spent a footer ask


def test_answers_are_the_routes_own(served: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=5)
    status, headers, body = post(conn, [{"ask": "x", "type": "nope"}])
    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert "events.0.type" in body["errors"]
    status, _, body = post(conn, [], Origin="https://elsewhere.example")
    assert status == 403
    status, _, body = post(conn, [], **{"Content-Type": "image/png"})
    assert (status, body["type"].rsplit("/", 1)[1]) == (415, "unsupported-media-type")
    conn.request("OPTIONS", "/support/events", headers={"Origin": ORIGIN})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200
    assert resp.getheader("Access-Control-Allow-Methods") == "GET, POST"
    conn.request("GET", "/support/events")
    resp = conn.getresponse()
    resp.read()
    assert (resp.status, resp.getheader("Allow")) == (405, "OPTIONS, POST")
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (200, {"status": "ok"})
    conn.request("GET", "/v1/access")  # nothing else is served here
    resp = conn.getresponse()
    assert resp.status == 404
    assert json.loads(resp.read())["status"] == 404


def _beacon(settings: Settings) -> bytes:
    body = json.dumps({"events": [{"ask": ask(settings), "type": "view"}]}).encode()
    return (
        b"POST /support/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_pipelined_split_and_continued_requests(served: int, settings: Settings) -> None:
    one = _beacon(settings)
    # Two requests in one packet, then the last one closing: three answers, in order.
    last = one.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    got = raw(served, one + one + last, half_close=False)
    assert got.count(b"HTTP/1.1 202 Accepted") == 3
    assert got.lower().count(b"connection: close") == 1
    # Nothing pipelined after a request that closes is answered.
    assert raw(served, last + one, half_close=False).count(b"HTTP/1.1 202 Accepted") == 1
    # The same request cut into pieces that arrive apart.
    got = raw(served, last, pause=0.05, parts=7, half_close=False)
    assert got.startswith(b"HTTP/1.1 202 Accepted") and got.endswith(b'"dropped": 0}')
    # Expect: 100-continue: the interim answer before the body is sent.
    head, _, payload = last.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        sock.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(payload)
        assert sock.recv(4096).startswith(b"HTTP/1.1 202 Accepted")
    # HTTP/1.0 closes unless asked to keep alive.
    got = raw(served, last.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n").replace(b"Connection: close\r\n", b""))
    assert got.startswith(b"HTTP/1.1 202") and b"connection: close" in got.lower()


def test_a_chunked_body_is_read_to_the_limit(served: int, settings: Settings) -> None:
    """sendBeacon sends a Content-Length, but a proxy may forward chunks: they are accepted, and
    the route's limit holds for them too (a 413 that closes, the rest of the body unread)."""
    head, _, body = _beacon(settings).partition(b"\r\n\r\n")
    chunked = head.split(b"\r\nContent-Length")[0] + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    got = raw(served, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert got.startswith(b"HTTP/1.1 202 Accepted") and got.endswith(b'{"recorded": 1, "dropped": 0}')
    # Past the limit, and the last chunk still to come: answered without waiting for it.
    over = b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(5))
    got = raw(served, chunked.replace(b"Host: x\r\n", b"Host: x\r\nConnection: keep-alive\r\n") + over)
    head, _, answer = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert json.loads(answer)["errors"] == {"body": ["At most 65536 bytes."]}


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"NONSENSE\r\n\r\n", id="request-line"),
        pytest.param(b"POST /support/events HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", id="header-line"),
        pytest.param(b"POST /support/events HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", id="length"),
        # Request smuggling: two framings, or two lengths, are refused, not guessed between.
        pytest.param(
            b"POST /support/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"POST /support/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            id="two-lengths",
        ),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", id="folded-header"),
    ],
)
def test_what_the_parser_refuses_gets_a_400_that_closes(served: int, request_bytes: bytes) -> None:
    # uvicorn's own answer (text, not problem+json): the request never reached the app.
    got = raw(served, request_bytes)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in head.lower()
    assert body == b"Invalid HTTP request received."


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST /support/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 999999\r\n\r\n",
            413,
        ),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
)
def test_oversized_requests_are_problems_that_close(served: int, request_bytes: bytes, status: int) -> None:
    got = raw(served, request_bytes)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"connection: close" in head.lower()
    assert json.loads(body)["status"] == status


def test_a_head_that_never_completes_is_cut_off(served: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slowloris: a byte now and then, never the end of the head; the connection is closed."""
    monkeypatch.setattr(intake, "HEAD_SECONDS", 0.3)
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /support/events HTTP/1.1\r\n")
        for _ in range(20):
            time.sleep(0.05)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        assert sock.recv(100) == b""  # closed, unanswered
        assert time.monotonic() - started < 3


def test_answers_are_not_held_back_by_nagle(served: int) -> None:
    """uvicorn writes an answer's head and body apart; without TCP_NODELAY on the connection the
    body waits for the client's delayed ACK (40 ms a request). asyncio sets it on sockets made
    with IPPROTO_TCP, so the listening socket must be one, and so is what it accepts."""
    with intake.listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
    with socket.create_connection(("127.0.0.1", served), timeout=5) as sock:
        # A generous bound: 20 requests with the 40 ms delay take 0.8 s; without it, milliseconds.
        started = time.monotonic()
        for _ in range(20):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b'{"status": "ok"}'):
                chunk = sock.recv(4096)
                assert chunk, got
                got += chunk
        assert time.monotonic() - started < 0.6


def test_the_environ_is_what_the_route_reads() -> None:
    """The WSGI environ built from uvicorn's scope: repeated headers joined (X-Forwarded-For for
    ``proxy_hops``), the peer address, the media type and the body."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.update(environ, body=environ["wsgi.input"].read())
        start_response("202 Accepted", [("Content-Type", "application/json")])
        return [b"{}"]

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/support/events",
        "query_string": b"a=1",
        "http_version": "1.1",
        "scheme": "http",
        "client": ("192.0.2.7", 50000),
        "server": ("127.0.0.1", 8001),
        "headers": [
            (b"content-type", b"text/plain;charset=UTF-8"),
            (b"content-length", b"4"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"origin", ORIGIN.encode()),
        ],
    }
    parts = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd"},
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return parts.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(intake.IntakeASGI(app)(scope, receive, send))
    assert seen["REMOTE_ADDR"] == "192.0.2.7"
    assert seen["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 203.0.113.9"
    assert seen["HTTP_ORIGIN"] == ORIGIN
    assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"], seen["body"]) == (
        "text/plain;charset=UTF-8",
        "4",
        b"abcd",
    )
    assert (seen["PATH_INFO"], seen["QUERY_STRING"], seen["SERVER_PORT"]) == (
        "/support/events",
        "a=1",
        "8001",
    )
    assert sent[0] == {
        "type": "http.response.start",
        "status": 202,
        "headers": [(b"Content-Type", b"application/json")],
    }
    assert sent[1] == {"type": "http.response.body", "body": b"{}"}


def test_the_settings_are_checked(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        {"PAYWALL_EVENTS_BIND": "127.0.0.1:8001", "PAYWALL_EVENTS_URL": "https://e.example"}
    )
    assert (settings.server.events_bind, settings.server.events_url) == (
        "127.0.0.1:8001",
        "https://e.example",
    )
    with pytest.raises(ConfigError, match=r"server\.events_bind"):
        make_settings({"PAYWALL_EVENTS_BIND": "8001"}).server  # noqa: B018 - building the section checks it
    with pytest.raises(ConfigError, match="must differ"):
        make_settings({"PAYWALL_EVENTS_BIND": "127.0.0.1:8000", "PAYWALL_BIND": "127.0.0.1:8000"}).server  # noqa: B018 - building the section checks it
    with pytest.raises(ConfigError, match=r"server\.events_url"):
        make_settings({"PAYWALL_EVENTS_URL": "events.example"}).server  # noqa: B018 - building the section checks it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_serve_starts_the_intake_at_a_lower_priority(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    url = f"sqlite:///{tmp_path}/paywall.sqlite3"
    port, events_port = free_port(), free_port()
    env.update(
        PAYWALL_DATABASE_URL=url,
        PAYWALL_WORKERS="1",
        PAYWALL_EVENTS_BIND=f"127.0.0.1:{events_port}",
        PAYWALL_EVENTS_URL=f"http://127.0.0.1:{events_port}",
    )
    paywall = [sys.executable, "-m", "paywall.cli"]
    subprocess.run([*paywall, "db", "upgrade"], env=env, check=True, cwd=tmp_path, capture_output=True)
    proc = subprocess.Popen(
        [*paywall, "serve", "--no-apply", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", seconds=60)
        wait_healthy(proc, f"http://127.0.0.1:{events_port}", seconds=60)
        (pid,) = children_running(proc.pid, b"intake")
        assert nice_of(pid) >= intake.INTAKE_NICE
        for beacon_port in (events_port, port):  # the web workers' route still answers too
            conn = http.client.HTTPConnection("127.0.0.1", beacon_port, timeout=10)
            status, _, body = post(conn, [{"ask": "forged", "type": "view"}])
            assert (status, body) == (202, {"recorded": 0, "dropped": 1})
            conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
