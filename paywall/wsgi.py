"""The WSGI entry point for gunicorn: ``paywall.wsgi:app``."""

from paywall.app import create_app, log_missing_settings
from paywall.config import ConfigError, load_settings

try:
    settings = load_settings()
    app = create_app(settings)
except ConfigError as exc:
    # gunicorn prints a RuntimeError raised while loading the app as one "Error:" line and exits 1.
    raise RuntimeError(f"configuration: {exc}") from None
log_missing_settings(settings)
