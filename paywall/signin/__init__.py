"""Readers without site accounts: sign-in by email code or link, reader tokens, sessions."""
