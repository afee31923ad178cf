"""gunicorn settings for paywall. Every value can be overridden by an environment variable."""

import multiprocessing
import os
import shutil
import tempfile

# PAYWALL_BIND, else the default of config/default.toml.
bind = os.environ.get("PAYWALL_BIND", "127.0.0.1:8000")

# Each request is short (a few queries). Twice the cores plus one is gunicorn's own advice for
# I/O-bound work. Two threads per worker cover waits on the database; more made the tail worse
# under the GIL (bench/access.py on PostgreSQL, p99 at 500 req/s: 46 ms with 4 threads, 14-18 ms
# with 1 or 2), while one thread would let a long export hold a whole worker.
workers = int(os.environ.get("PAYWALL_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
worker_class = "gthread"
threads = int(os.environ.get("PAYWALL_THREADS", "2"))

# Load the app once in the master: start-up problems fail fast, the "not configured" warnings
# are logged once, and workers fork from a warm image.
preload_app = True

# A request that takes longer than this is stuck: the worker is killed and replaced.
timeout = int(os.environ.get("PAYWALL_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("PAYWALL_GRACEFUL_TIMEOUT", "20"))
keepalive = 5

# Recycle workers now and then, so a slow leak cannot grow without bound; but rarely, since a
# new worker opens new database connections, and PostgreSQL forks a cold backend for each: at
# 10,000 requests each worker of the access benchmark was replaced every half minute, and those
# replacements were its latency tail (PostgreSQL, p99 at 500 req/s: 6-18 ms, 3.9-4.1 ms without).
# At 200,000, a worker serving 300 requests a second lives about 11 minutes. 0 turns it off.
max_requests = int(os.environ.get("PAYWALL_MAX_REQUESTS", "200000"))
max_requests_jitter = max_requests // 10

# Behind a reverse proxy on the same host; set FORWARDED_ALLOW_IPS to the proxy's address otherwise.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = os.environ.get("PAYWALL_ACCESS_LOG", "-")
# No query strings in the access log: they can carry tokens (unsubscribe, widget).
access_log_format = (
    '{"time": "%(t)s", "level": "INFO", "logger": "access", "remote": "%(h)s", "method": "%(m)s", '
    '"path": "%(U)s", "status": %(s)s, "bytes": %(B)s, "ms": %(M)s, "request_id": "%({x-request-id}o)s"}'
)
# Values in access lines are redacted and JSON-escaped (a %0A in a path cannot forge a line).
logger_class = "paywall.accesslog.AccessLogger"
errorlog = "-"
loglevel = os.environ.get("PAYWALL_LOG_LEVEL", "info").lower()


# Prometheus multiprocess mode: each worker writes its metrics to files here, /metrics adds them up.
# Set before the app is imported (preload), cleared at every start so old workers' counts go.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = os.path.join(tempfile.gettempdir(), f"paywall-metrics-{os.getpid()}")
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

# Rate-limit counters every worker shares ([ratelimit] storage_uri = "auto"): a SQLite file in a
# private directory made fresh at every start, so a client gets the limit once, not once per worker.
if not os.environ.get("PAYWALL_RATELIMIT_DIR"):
    os.environ["PAYWALL_RATELIMIT_DIR"] = tempfile.mkdtemp(prefix="paywall-ratelimit-")


def on_exit(server):  # type: ignore[no-untyped-def]
    if os.path.basename(os.environ.get("PAYWALL_RATELIMIT_DIR", "")).startswith("paywall-ratelimit-"):
        shutil.rmtree(os.environ["PAYWALL_RATELIMIT_DIR"], ignore_errors=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    # Connections opened in the master must not be shared with the forked workers.
    from paywall.context import db_of
    from paywall.wsgi import app

    db_of(app).dispose()
    # Appeal events (POST /support/events) are buffered per worker and written every 50 ms by a
    # thread of the worker's own (paywall/experiments/events.py Writer); a lone process writes
    # each beacon at once.
    from paywall.experiments.events import writer_of

    writer_of(app).start()


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    # Write the appeal events still buffered before the worker goes (max_requests, a restart).
    from paywall.experiments.events import writer_of
    from paywall.wsgi import app

    writer_of(app).close()
