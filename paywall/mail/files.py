"""Mail as files, for a laptop without an SMTP server: each message becomes one .eml file.

``make run`` with no PAYWALL_SMTP_HOST still lets a developer try the whole journey (sign in by
code, receipts): the worker writes what it would send under ``[signin] mail_dir`` (var/mail/),
one file per message, to open in any mail program. Development only: ``file_transport`` refuses
when server.public_url is https, where mail must really go out.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from email.message import Message
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from paywall import clock
from paywall.config import ConfigError, Settings
from paywall.mail.message import to_bytes
from paywall.mail.smtp import Delivery
from paywall.signin.settings import signin_settings


class FileTransport:
    """Writes each message to ``<dir>/<UTC time>-<random>.eml``; the SmtpTransport interface."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, msg: Message, *, envelope_from: str | None = None) -> Delivery:
        """Write ``msg``; always ``sent`` (a disk error is raised: nothing half-written stays)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = clock.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(to_bytes(msg))
        os.replace(partial, path)  # a reader of the folder never sees half a message
        return Delivery("sent", 250, str(path))

    def close(self) -> None:
        """Nothing to close (the SmtpTransport interface)."""

    def __enter__(self) -> FileTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def mail_dir(settings: Settings) -> Path:
    """``[signin] mail_dir``, relative to the working directory like var/ (the SQLite file, keys)."""
    return Path(signin_settings(settings).mail_dir)


def file_transport(settings: Settings) -> FileTransport:
    """The development transport; ConfigError when the service is public (https)."""
    if urlsplit(settings.server.public_url).scheme == "https":
        raise ConfigError(
            f"server.public_url is {settings.server.public_url}: writing mail to files under "
            f"{mail_dir(settings)} instead of sending it is for development only"
        )
    return FileTransport(mail_dir(settings))
