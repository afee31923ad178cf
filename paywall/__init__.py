"""paywall: a donation and subscription paywall service for independent publishers."""

__version__ = "0.1.0"
