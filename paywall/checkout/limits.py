"""Rate limits on the public and donation routes (card testing), with Flask-Limiter.

One Limiter per app (not a module global), built from ``[ratelimit]``. ``storage_uri = "auto"`` (the
default) counts in a SQLite file that every worker of one gunicorn server shares (the directory comes
from PAYWALL_RATELIMIT_DIR, which config/gunicorn.conf.py sets at start), and in memory in a lone
process; ``redis://...`` shares the counters across hosts. Limits apply per client address and per
reader; a breach is a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError

from paywall.checkout import limitstore
from paywall.checkout.settings import ratelimit_settings
from paywall.config import ConfigError, Settings
from paywall.context import current_settings, settings_of

log = logging.getLogger(__name__)

EXTENSION = "paywall.checkout.limiter"
TOO_MANY = "Too many attempts from here; wait a little and try again."
# Set by config/gunicorn.conf.py: a directory private to one server (master and its workers).
SHARED_DIR_ENV = "PAYWALL_RATELIMIT_DIR"


def resolve_storage_uri(configured: str, environ: dict[str, str] | None = None) -> str:
    """The storage URI ``configured`` stands for: "auto" is the SQLite file every worker of this
    server shares when gunicorn's config names a directory for it, else this process's memory."""
    if configured != "auto":
        return configured
    shared = (os.environ if environ is None else environ).get(SHARED_DIR_ENV)
    if shared:
        return f"{limitstore.SCHEME}:///{Path(shared).resolve() / 'ratelimit.sqlite3'}"
    return "memory://"


def client_address() -> str:
    """The client's address; with ``proxy_hops`` N, the Nth address from the right of X-Forwarded-For.

    Only the hops the operator declares are trusted, so a client cannot pick its own bucket.
    """
    settings: Settings = current_settings()
    hops = ratelimit_settings(settings).proxy_hops
    if hops:
        chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(chain) >= hops:
            return f"addr:{chain[-hops]}"
    return f"addr:{request.remote_addr or 'unknown'}"


def set_reader(reader: str | None) -> None:
    """Record the reader a request acts for, before the limits are checked (see reader_key)."""
    g.checkout_reader = reader


def reader_key() -> str:
    return f"reader:{g.get('checkout_reader')}"


def no_reader() -> bool:
    # Guests have no reader bucket; the address limit still applies to them.
    return g.get("checkout_reader") is None


def limiter_for(app: Flask) -> Limiter:
    """This app's Limiter, built once from [ratelimit]."""
    limiter: Limiter | None = app.extensions.get(EXTENSION)
    if limiter is None:
        conf = ratelimit_settings(settings_of(app))
        limiter = Limiter(
            key_func=client_address,
            storage_uri=resolve_storage_uri(conf.storage_uri),
            strategy="moving-window",
            headers_enabled=True,
            retry_after="delta-seconds",
            key_prefix="paywall",
            enabled=conf.enabled,
            # If the storage fails (Redis gone, the SQLite file unwritable), count in this process's
            # memory instead: limits stay, never a 500.
            in_memory_fallback_enabled=True,
        )
        try:
            limiter.init_app(app)
        except ConfigurationError as exc:
            hint = " (pip install 'paywall[redis]')" if conf.storage_uri.startswith("redis") else ""
            raise ConfigError(f"ratelimit.storage_uri: {exc}{hint}") from None
        app.extensions[EXTENSION] = limiter
    return limiter


def limit(
    app: Flask,
    endpoint: str,
    *,
    per_address: str | None = None,
    per_reader: str | None = None,
    reader_from: Callable[[], str | None] | None = None,
) -> None:
    """Wrap a registered view with per-address and per-reader limits.

    ``reader_from`` names the reader before the view runs (from a signed token or the body), so a
    single reader cannot spread attempts over many addresses, nor an address over many readers.
    """
    limiter = limiter_for(app)
    view: Any = app.view_functions[endpoint]
    if per_reader:
        view = limiter.limit(
            per_reader,
            key_func=reader_key,
            exempt_when=no_reader,
            scope=f"{endpoint}:reader",
            error_message=TOO_MANY,
        )(view)
    if per_address:
        view = limiter.limit(
            per_address, key_func=client_address, scope=f"{endpoint}:address", error_message=TOO_MANY
        )(view)
    if reader_from is not None:
        inner = view

        def identified(*args: Any, **kwargs: Any) -> Any:
            set_reader(reader_from())
            return inner(*args, **kwargs)

        identified.__name__ = getattr(inner, "__name__", endpoint)
        identified.__qualname__ = getattr(inner, "__qualname__", endpoint)
        identified.__module__ = getattr(inner, "__module__", __name__)
        view = identified
    app.view_functions[endpoint] = view


# -- failed authentication, per client address (auth.authenticate and the /reports sign-in) ---------

AUTH_FAILURES = "paywall/auth-failures"


@functools.lru_cache(maxsize=8)
def _parsed(limits_text: str) -> list[RateLimitItem]:
    # Every authenticated request asks: parse each setting once, not per request.
    return parse_many(limits_text)


def auth_retry_after(app: Flask, address: str) -> int | None:
    """Seconds until ``address`` (``client_address``) may try a key again, or None when it may now.

    The counters are ``app``'s Limiter's (shared by the workers like every limit); a storage
    failure lets the check through rather than answering 500. Needs no request context.
    """
    conf = ratelimit_settings(settings_of(app))
    if not conf.enabled:
        return None
    strategy = limiter_for(app).limiter
    items = _parsed(conf.auth_failures_per_address)
    try:
        # Every authenticated request asks, and nearly every address has no failure at all.
        # note_auth_failure counts each failure in every window, so none in the longest window
        # means none in the shorter ones either: one read answers (instead of one per window).
        longest = max(items, key=lambda item: item.get_expiry())
        if strategy.get_window_stats(longest, AUTH_FAILURES, address)[1] >= longest.amount:
            return None
        for item in items:
            if not strategy.test(item, AUTH_FAILURES, address):
                reset_at, _remaining = strategy.get_window_stats(item, AUTH_FAILURES, address)
                return max(1, math.ceil(reset_at - time.time()))
    except Exception:  # any storage error: never a 500 for this
        log.warning("rate-limit storage failed; failed-key throttle skipped", exc_info=True)
    return None


def note_auth_failure(app: Flask, address: str) -> None:
    """Count one failed key check against ``address`` (``client_address``)."""
    conf = ratelimit_settings(settings_of(app))
    if not conf.enabled:
        return
    strategy = limiter_for(app).limiter
    try:
        for item in _parsed(conf.auth_failures_per_address):
            strategy.hit(item, AUTH_FAILURES, address)
    except Exception:  # any storage error: never a 500 for this
        log.warning("rate-limit storage failed; a failed key check was not counted", exc_info=True)


# -- a lean limiter in this process, for the appeal beacons (POST /support/events) -------------------


class WorkerLimiter:
    """Fixed-window counts per key, in this process's memory: for a route too hot for the shared
    Limiter (the appeal beacons: its check on the shared SQLite file cost 0.8 ms, as much as the
    whole beacon should).

    The counts are per worker process (shared by its threads): with N gunicorn workers an address
    may send up to N times the limit. Fine for the beacons (an event grants nothing, and a flood
    only inflates the counts of an address that shows), not for money routes. Windows are fixed
    (``600/minute`` counts from each whole minute), so a burst across a window's edge may reach
    twice the limit. Pruning is free: a new window starts with an empty dict.
    """

    def __init__(self, limits_text: str) -> None:
        self._limits = [(item.amount, item.get_expiry()) for item in _parsed(limits_text)]
        self._windows: list[tuple[int, dict[str, int]]] = [(-1, {}) for _ in self._limits]
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Count one request of ``key``: None when allowed, else the seconds until it may retry
        (a refused request is not counted)."""
        now = time.time() if now is None else now
        with self._lock:
            counted = []
            for i, (amount, seconds) in enumerate(self._limits):
                window = int(now // seconds)
                start, counts = self._windows[i]
                if start != window:
                    counts = {}
                    self._windows[i] = (window, counts)
                n = counts.get(key, 0)
                if n >= amount:
                    return max(1, math.ceil((window + 1) * seconds - now))
                counted.append((counts, n + 1))
            for counts, n in counted:
                counts[key] = n
        return None


def address_of(environ: dict[str, Any], proxy_hops: int) -> str:
    """``client_address`` from a WSGI environ (for a route served in front of Flask)."""
    if proxy_hops:
        chain = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(chain) >= proxy_hops:
            return f"addr:{chain[-proxy_hops]}"
    return f"addr:{environ.get('REMOTE_ADDR') or 'unknown'}"
