"""What every ``paywall`` command shares: settings, database and logging, built on first use.

A module of its own, so a feature's commands (``paywall/<feature>/cli.py``) import it without
importing ``paywall.cli``, which imports them: each module imports cleanly in a fresh interpreter.
Heavy imports wait for first use, so ``paywall --help`` stays light (tests/test_cli_startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from paywall.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from paywall.db import Database


class Context:
    """Settings and database, built on first use so ``paywall --help`` needs neither.

    Loading the settings checks every section (a typo stops any command with the key named) and
    sets up logging exactly as the web app does (JSON lines, request or job id, the redaction
    filter), so no command logs around it.
    """

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from paywall.sections import check_settings

            try:
                settings = load_settings()
                check_settings(settings)
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from None
            from paywall.observability import configure_logging

            configure_logging(settings.logging.level, json_logs=settings.logging.format == "json")
            self._settings = settings
        return self._settings

    def check_signing(self) -> None:
        """Stop a command that signs links (the server, the mail worker, appeal sends) for an
        https service without PAYWALL_SIGNING_KEY: a key generated on this disk would break every
        token and unsubscribe link on another host or after a redeploy."""
        from paywall.sections import check_serving

        try:
            check_serving(self.settings)
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None

    @property
    def db(self) -> Database:
        if self._db is None:
            from paywall.db import Database

            s = self.settings.database
            self._db = Database(s.url, pool_size=s.pool_size, lock_timeout_seconds=s.lock_timeout_seconds)
        return self._db


pass_ctx = click.make_pass_decorator(Context, ensure=True)
