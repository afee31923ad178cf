"""Request ids, JSON logs, and Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging

from flask.testing import FlaskClient

from paywall.observability import RequestIdFilter, configure_logging


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert len(generated) == 32 and generated.isalnum()


def test_log_lines_are_json_with_the_request_id(client: FlaskClient) -> None:
    configure_logging("INFO", json_logs=True)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_paywall", False))
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    logger = logging.getLogger("paywall.test")

    @client.application.get("/_log_probe")
    def _probe() -> str:
        logger.warning("probe for %s", "reader-1")
        return "ok"

    try:
        client.get("/_log_probe", headers={"X-Request-ID": "req-42"})
    finally:
        handler.setStream(old)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    probe = next(line for line in lines if line["message"] == "probe for reader-1")
    assert (
        probe["request_id"] == "req-42" and probe["level"] == "WARNING" and probe["logger"] == "paywall.test"
    )


def test_filter_outside_a_request() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    # The filter adds request_id to the record; LogRecord's stub does not declare it.
    assert RequestIdFilter().filter(record) and record.request_id == "-"  # type: ignore[attr-defined]


def test_metrics_use_route_templates_not_reader_ids(client: FlaskClient, site_key: dict[str, str]) -> None:
    client.get("/v1/readers/secret-reader-id", headers=site_key)
    text = client.get("/metrics").get_data(as_text=True)
    assert "paywall_http_request_duration_seconds" in text
    assert 'route="/v1/readers/<reader:reader>"' in text
    assert "secret-reader-id" not in text
    assert "paywall_stripe_events_failed" in text


def test_metrics_count_webhooks_and_mail(client: FlaskClient) -> None:
    from paywall.mail import queue
    from tests.support.stripe_events import deliver, load_scenario

    event = load_scenario("one_time_donation_checkout")[0]
    assert deliver(client, event).status_code == 200
    assert deliver(client, event).get_json()["outcome"] == "duplicate"
    client.post("/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=0"})
    with client.application.extensions["paywall.db"].transaction() as session:
        queue.enqueue(session, kind="trial_ending", dedupe_key="k1", to_email=None, reader_id=None, data={})
    text = client.get("/metrics").get_data(as_text=True)
    assert f'paywall_webhook_events_total{{outcome="duplicate",type="{event["type"]}"}}' in text
    assert 'paywall_webhook_events_total{outcome="rejected",type="unverified"}' in text
    assert 'paywall_mail_messages{kind="trial_ending",outcome="pending"} 1.0' in text
