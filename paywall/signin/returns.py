"""Where a reader may be sent back to: only pages of the site, or of this service (no open redirect)."""

from __future__ import annotations

from urllib.parse import urlsplit

from paywall.checkout.settings import checkout_settings
from paywall.config import Settings

MAX_RETURN_URL = 2000


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def safe_return_url(settings: Settings, url: str | None) -> str | None:
    """``url`` if it is on an allowed origin, the [checkout] site_url's or our public URL's; else None."""
    if not url or not isinstance(url, str) or len(url) > MAX_RETURN_URL:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    allowed = {_origin(o) for o in settings.server.allowed_origins}
    allowed.add(_origin(settings.server.public_url))
    site = checkout_settings(settings).site_url
    if site:
        allowed.add(_origin(site))
    return url if _origin(url) in allowed else None
