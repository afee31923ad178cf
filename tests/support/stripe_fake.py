"""A local HTTP server standing in for Stripe's API in the checkout tests (loopback only).

It records every request exactly as stripe-python sent it (method, path, the form-encoded body with
its bracketed keys, or a GET's query, the Idempotency-Key header), answers in Stripe's shapes (built
from the shared fixtures), replays the first answer for a repeated idempotency key as Stripe does,
and can be told to fail: a Stripe error body, a 500, or an answer slower than the client's timeout.

Checkout Sessions it created (or was given with ``add_session``) can be read back with
``GET /v1/checkout/sessions/{id}``, ``expand[]`` included (dotted paths, e.g.
``payment_intent.latest_charge``), from the objects ``add_object`` / ``complete`` gave it; ``complete``
plays the customer paying on Stripe's page. The hosted-page stand-in (``/checkout/{id}``, where the
303 sends a browser) has an email field and a Pay button: paying (``pay``) completes the session with
fresh objects of its mode from the scenarios, dated now, and answers 303 to the success_url, so a
browser test goes Checkout -> /thanks with no webhook.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.conftest import FIXTURES

SESSION_FIXTURE = json.loads((FIXTURES / "checkout_session.json").read_text())
# What paying on the stand-in's hosted page makes: a subscription or a one-off payment, in
# Stripe's shapes.
PAID_SCENARIOS = {"subscription": "monthly_subscription_checkout", "payment": "one_time_donation_checkout"}
LINKED_OBJECTS = ("customer", "subscription", "invoice", "payment_intent", "charge")


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    idempotency_key: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    status: int
    body: dict[str, Any] | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def stripe_error_body(
    message: str, *, type_: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_}
    if code:
        error["code"] = code
    return {"error": error}


def paid_objects(scenario: str, suffix: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A scenario's completed Checkout Session and the final state of each object it links to,
    with ``suffix`` on their ids (payments in one test never share objects) and every timestamp
    moved so that it completed a minute ago (access is decided against the real clock)."""
    (path,) = (FIXTURES / "scenarios").glob(f"?_{scenario}.json")
    events = json.loads(path.read_text())
    session = next(e for e in events if e["type"] == "checkout.session.completed")
    objects = {e["data"]["object"]["id"]: e["data"]["object"] for e in events}
    related = [o for o in objects.values() if o.get("object") in LINKED_OBJECTS]
    text = json.dumps({"paid": session["data"]["object"], "related": related})
    for obj in related:
        text = text.replace(f'"{obj["id"]}"', f'"{obj["id"]}_{suffix}"')
    moved = _shift(json.loads(text), int(time.time()) - 60 - session["created"])
    return moved["paid"], moved["related"]


def _shift(value: Any, delta: int) -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 1_700_000_000 < value < 1_900_000_000:
        return value + delta
    return value


class FakeStripe:
    """``with FakeStripe() as stripe: ...`` serves on 127.0.0.1 at ``stripe.url``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.replays: dict[str, tuple[int, dict[str, Any]]] = {}
        self.counter = itertools.count(1)
        # Checkout Sessions and the objects they can expand to, by id, as GET answers them.
        self.sessions: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FakeStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # -- scripting ----------------------------------------------------------------------------

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, *, times: int = 1, **headers: str
    ) -> None:
        for _ in range(times):
            self.script.append(Scripted(status=status, body=body, headers=headers))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        for _ in range(times):
            self.script.append(Scripted(status=0, delay=seconds))

    def posts(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def gets(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    # -- objects GET answers ------------------------------------------------------------------

    def add_object(self, *objects: dict[str, Any]) -> None:
        """Objects (subscription, invoice, payment intent, charge, ...) a GET may expand to."""
        with self.lock:
            for obj in objects:
                self.objects[obj["id"]] = copy.deepcopy(obj)

    def add_session(self, session: dict[str, Any], *related: dict[str, Any]) -> None:
        """A Checkout Session as Stripe holds it (ids, not objects, in its link fields)."""
        self.add_object(*related)
        with self.lock:
            self.sessions[session["id"]] = copy.deepcopy(session)

    def complete(self, session_id: str, paid: dict[str, Any], *related: dict[str, Any]) -> dict[str, Any]:
        """The customer pays: the session created here takes the outcome fields of ``paid`` (a
        completed session from a scenario: status, customer, subscription or payment intent, the
        email typed in), keeping what it was created with (reader, metadata, URLs)."""
        self.add_object(*related)
        outcome = (
            "status",
            "payment_status",
            "customer",
            "customer_details",
            "subscription",
            "invoice",
            "payment_intent",
            "amount_total",
            "amount_subtotal",
            "currency",
        )
        with self.lock:
            stored = self.sessions[session_id]
            stored.update({key: copy.deepcopy(paid.get(key)) for key in outcome})
            return copy.deepcopy(stored)

    def pay(self, session_id: str, email: str) -> str:
        """The customer pays with ``email`` on the hosted page: the session completes with fresh
        objects of its mode, dated now; returns the success_url Stripe would send the browser to."""
        with self.lock:
            stored = self.sessions[session_id]
            mode, n = str(stored.get("mode")), next(self.counter)
        paid, related = paid_objects(PAID_SCENARIOS.get(mode, "one_time_donation_checkout"), f"x{n:04d}")
        paid["customer_details"] = {**(paid.get("customer_details") or {}), "email": email}
        done = self.complete(session_id, paid, *related)
        return str(done["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)

    def _expanded(self, session_id: str, paths: list[str]) -> tuple[int, dict[str, Any]]:
        found = self.sessions.get(session_id)
        if found is None:
            error = stripe_error_body(f"No such checkout.session: '{session_id}'", code="resource_missing")
            error["error"]["param"] = "session"
            return 404, error
        body = copy.deepcopy(found)
        for path in paths:
            self._expand(body, path.split("."))
        return 200, body

    def _expand(self, obj: dict[str, Any], keys: list[str]) -> None:
        head, rest = keys[0], keys[1:]
        value = obj.get(head)
        if isinstance(value, str) and value in self.objects:
            value = obj[head] = copy.deepcopy(self.objects[value])
        if rest and isinstance(value, dict):
            self._expand(value, rest)

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        n = next(self.counter)
        if method == "POST" and path == "/v1/checkout/sessions":
            body = copy.deepcopy(SESSION_FIXTURE)
            body.update(
                id=f"cs_test_fake{n:04d}",
                url=f"{self.url}/checkout/cs_test_fake{n:04d}",
                mode=form.get("mode"),
                client_reference_id=form.get("client_reference_id"),
                customer=form.get("customer"),
                customer_email=form.get("customer_email"),
                success_url=form.get("success_url"),
                cancel_url=form.get("cancel_url"),
                submit_type=form.get("submit_type"),
                metadata={key[9:-1]: value for key, value in form.items() if key.startswith("metadata[")},
                status="open",
                payment_status="unpaid",
                created=int(time.time()),
                livemode=False,
            )
            self.sessions[body["id"]] = copy.deepcopy(body)
            return 200, body
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            expand = [value for key, value in form.items() if key.startswith("expand[")]
            return self._expanded(unquote(path.rsplit("/", 1)[1]), expand)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return 200, {
                "id": f"bps_fake{n:04d}",
                "object": "billing_portal.session",
                "customer": form.get("customer"),
                "return_url": form.get("return_url"),
                "livemode": False,
                "url": f"{self.url}/portal/bps_fake{n:04d}",
            }
        return 404, stripe_error_body(f"Unrecognized request URL ({method}: {path}).")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Request-Id", f"req_fake{next(fake.counter):04d}")
                for key, value in headers.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith(("/checkout/", "/portal/")):
                    # What a browser reaches after the 303: a stand-in for Stripe's hosted page,
                    # where Checkout's has an email field and a Pay button.
                    page = f'<!doctype html><link rel=icon href="data:,"><title>Fake Stripe Checkout</title><h1>Fake Stripe Checkout {self.path}</h1>'
                    if self.path.startswith("/checkout/"):
                        page += (
                            f'<form method="post" action="{self.path}/pay"><label for="email">Email</label>'
                            '<input id="email" name="email" type="email" required><button>Pay</button></form>'
                        )
                    self._send(200, page.encode(), "text/html; charset=utf-8", {})
                    return
                parts = urlsplit(self.path)
                self._handle("GET", dict(parse_qsl(parts.query, keep_blank_values=True)), parts.path)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.path.startswith("/checkout/") and self.path.endswith("/pay"):
                    email = dict(parse_qsl(raw)).get("email") or "reader@example.org"
                    success = fake.pay(self.path.split("/")[2], email)
                    self._send(303, b"", "text/plain", {"Location": success})
                    return
                self._handle("POST", dict(parse_qsl(raw, keep_blank_values=True)), self.path)

            def _handle(self, method: str, form: dict[str, str], path: str) -> None:
                key = self.headers.get("Idempotency-Key")
                with fake.lock:
                    fake.requests.append(
                        Recorded(method, path, form, key, headers=dict(self.headers.items()))
                    )
                    scripted = fake.script.popleft() if fake.script else None
                if scripted is not None and scripted.delay:
                    fake.stopping.wait(scripted.delay)
                    return  # the client has given up; answer nothing
                if scripted is not None:
                    body = scripted.body or stripe_error_body("An unknown error occurred", type_="api_error")
                    self._send(
                        scripted.status, json.dumps(body).encode(), "application/json", scripted.headers
                    )
                    return
                with fake.lock:
                    replay = fake.replays.get(key) if key else None
                    headers = {"Idempotent-Replayed": "true"} if replay else {}
                    if replay is None:
                        replay = fake._answer(method, path, form)
                        if key and replay[0] == 200:
                            fake.replays[key] = replay
                status, body = replay
                self._send(status, json.dumps(body).encode(), "application/json", headers)

        return Handler
