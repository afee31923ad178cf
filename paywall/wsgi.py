"""The WSGI entry point for gunicorn: ``paywall.wsgi:app``."""

from paywall.app import create_app, log_missing_settings
from paywall.config import load_settings

settings = load_settings()
app = create_app(settings)
log_missing_settings(settings)
