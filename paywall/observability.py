"""Operations: structured JSON logs with a request id on every line, and Prometheus metrics.

Logs: one JSON object per line (python-json-logger), each carrying the ``request_id`` of the request
that wrote it (taken from a sane ``X-Request-ID`` header, else generated, and echoed back), so a
reverse proxy's id follows a request through the service. Personal data never goes into a log
message: log ids (reader ids, Stripe ids), not emails or names.

Metrics (prometheus-client): request latency by route, webhook outcomes by event type, mail
outcomes, and the Stripe sync lag. Under gunicorn each worker is a process, so metrics use the
client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (config/gunicorn.conf.py sets it).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from pythonjsonlogger.json import JsonFormatter

from paywall import clock
from paywall.context import db_of

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Jobs and CLI commands set this too, so their log lines carry an id of their own.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

REQUEST_LATENCY = Histogram(
    "paywall_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOK_OUTCOMES = Counter(
    "paywall_webhook_events_total",
    "Stripe webhook deliveries, by event type and outcome.",
    ["type", "outcome"],
)


def record_webhook(event_type: str, outcome: str) -> None:
    """Count one webhook delivery (outcome: queued, duplicate, ignored, rejected, error)."""
    WEBHOOK_OUTCOMES.labels(type=event_type, outcome=outcome).inc()


# Defence in depth: whatever a message carries by mistake (an SMTP reply quoting the recipient,
# an exception echoing a header), these never reach a log line.
#
# Every pattern runs in linear time, so a hostile value (a signed event with a 100,000-character
# id) cannot stall a worker: a match may only start where a run of its characters starts (the
# lookbehinds), and repeats that something must follow are bounded.
#
# An address as the API accepts it, and more: any local part (non-ASCII too), then a domain name
# (non-ASCII, or a bare host such as ``localhost``) or a bracketed literal (``[127.0.0.1]``).
_ADDRESS_CHAR = r"[^\s@<>()\[\]{},;:\"`/\\|]"
_REDACTIONS = [
    (
        re.compile(rf"(?<!{_ADDRESS_CHAR}){_ADDRESS_CHAR}+@(?:\[[^\]\s]{{1,255}}\]|{_ADDRESS_CHAR}+)"),
        "[email]",
    ),
    # Nothing follows their last (greedy) repeat, so these never backtrack.
    (re.compile(r"\bpw_[0-9a-f]{16}_[A-Za-z0-9-]+"), "[api-key]"),
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+"), "[stripe-key]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "[webhook-secret]"),
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), "[token]"),
    # Up to the END line, or (no END: a cut-off key) to the end of the text.
    (
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----"
            r"(?:[\s\S]*?-----END [A-Z ]{0,40}PRIVATE KEY-----|[\s\S]*)"
        ),
        "[private-key]",
    ),
]

# Control characters (and Unicode line breaks) in a message are written escaped, so a value
# carrying a newline (a %0A in a request path) cannot start a forged log line.
_CONTROLS = {i: f"\\x{i:02x}" for i in (*range(32), 127, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def redact(text: str) -> str:
    """``text`` with email addresses, keys, secrets and tokens replaced by placeholders."""
    for pattern, placeholder in _REDACTIONS:
        text = pattern.sub(placeholder, text)
    return text


def escape_controls(text: str) -> str:
    """``text`` with control characters and line breaks escaped (``\\x0a``): one line, always."""
    return text.translate(_CONTROLS)


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record, and scrub personal data and secrets from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging to report
            return True
        cleaned = escape_controls(redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks go through the formatter; render and scrub them here.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(level: str, *, json_logs: bool = True) -> None:
    """JSON (or, with ``json_logs`` false, plain) lines on stderr at ``level``, each with its
    request id. Idempotent."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_paywall", False)), None)
    if handler is None:
        # The process's own stderr, not whatever sys.stderr is when the first command configures
        # logging (a test's CliRunner swaps it for a buffer it then throws away).
        handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
        handler._paywall = True  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    if json_logs:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("paywall").setLevel(level.upper())


class DatabaseCollector:
    """Metrics read from the database at each scrape, so every process's work is counted: the
    Stripe sync's lag and failed events, and mail by kind and outcome. A database that cannot be
    read leaves its metrics out rather than failing the scrape."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sync = self.sync()
        if sync is None:
            return
        yield from sync
        yield from self.mail()

    def sync(self) -> list[GaugeMetricFamily] | None:
        """Seconds since the newest Stripe event was received, the applier's backlog and lag, and
        failed events waiting for replay (None: the database could not be read)."""
        from sqlalchemy import func, select

        from paywall.models import StripeEvent
        from paywall.webhooks import backlog

        try:
            with db_of(self.app).transaction(readonly=True) as session:
                newest = session.scalar(select(func.max(StripeEvent.received_at)))
                n_failed = session.scalar(
                    select(func.count()).select_from(StripeEvent).where(StripeEvent.status == "failed")
                )
                waiting = backlog.read(session)
        except Exception:
            return None
        families = []
        if newest is not None:
            if newest.tzinfo is None:  # SQLite aggregate results skip the column type
                newest = newest.replace(tzinfo=dt.UTC)
            lag = GaugeMetricFamily(
                "paywall_stripe_sync_lag_seconds", "Seconds since the newest Stripe event was received."
            )
            lag.add_metric([], (clock.now() - newest).total_seconds())
            families.append(lag)
        failed = GaugeMetricFamily(
            "paywall_stripe_events_failed", "Stored Stripe events that failed processing."
        )
        failed.add_metric([], float(n_failed or 0))
        families.append(failed)
        families.extend(_backlog_families(waiting))
        return families

    def mail(self) -> Iterator[GaugeMetricFamily]:
        """Mail outcomes from the tables every sender writes, so workers, CLI runs and web
        processes are all counted, whichever process sent the message."""
        from sqlalchemy import func, select

        from paywall.models import OutboxMessage
        from paywall.models.mail import AppealSend

        try:
            with db_of(self.app).transaction(readonly=True) as session:
                outbox = session.execute(
                    select(OutboxMessage.kind, OutboxMessage.status, func.count()).group_by(
                        OutboxMessage.kind, OutboxMessage.status
                    )
                ).all()
                appeals = session.execute(
                    select(AppealSend.state, func.count()).group_by(AppealSend.state)
                ).all()
        except Exception:
            return
        family = GaugeMetricFamily(
            "paywall_mail_messages",
            "Mail by kind and outcome (outbox and appeal ledger).",
            labels=["kind", "outcome"],
        )
        for kind, status, n in outbox:
            family.add_metric([kind, status], float(n))
        for state, n in appeals:
            family.add_metric(["appeal", state], float(n))
        yield family


def _backlog_families(waiting: Any) -> list[GaugeMetricFamily]:
    """The applier's backlog (``paywall.webhooks.backlog.Backlog``) as gauges."""
    count = GaugeMetricFamily(
        "paywall_stripe_events_waiting", "Recorded Stripe events not yet applied (the backlog)."
    )
    count.add_metric([], float(waiting.waiting))
    oldest = GaugeMetricFamily(
        "paywall_stripe_oldest_waiting_seconds",
        "Seconds the oldest event not yet applied has waited (0 with none); /readyz degrades past "
        "[stripe] max_apply_lag_seconds.",
    )
    oldest.add_metric([], waiting.oldest_seconds)
    lag = GaugeMetricFamily(
        "paywall_stripe_apply_lag_seconds",
        "Seconds from the 2xx to the event being applied, over events first applied in the last "
        "5 minutes, by quantile.",
        labels=["quantile"],
    )
    for quantile, value in (("0.5", waiting.lag_p50), ("0.99", waiting.lag_p99)):
        if value is not None:
            lag.add_metric([quantile], value)
    recent = GaugeMetricFamily(
        "paywall_stripe_applied_recently", "Events first applied in the last 5 minutes."
    )
    recent.add_metric([], float(waiting.applied_recently))
    return [count, oldest, lag, recent]


def init_app(app: Flask, api: Any) -> None:
    """Request ids, request latency, and GET /metrics."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        g.request_id = rid
        g.request_token = request_id_var.set(rid)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(resp: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            resp.headers[REQUEST_ID_HEADER] = rid
        started = g.get("request_started")
        if started is not None:
            # The route template, not the path: reader ids must not become label values.
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            REQUEST_LATENCY.labels(request.method, route, str(resp.status_code)).observe(
                time.perf_counter() - started
            )
        return resp

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        token = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    sync_registry = CollectorRegistry()
    sync_registry.register(DatabaseCollector(app))

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics (no personal data; restrict at the proxy if you prefer)."""
        body = generate_latest(registry) + generate_latest(sync_registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], content_type=CONTENT_TYPE_LATEST)
