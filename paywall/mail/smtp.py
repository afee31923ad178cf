"""The SMTP transport: one reused connection, a rate limit, retries that never risk a duplicate.

Each message is sent step by step (MAIL, RCPT, DATA) so the transport knows how far it got:

* a refusal or a dropped connection *before* the message body is sent cannot have delivered
  anything, so 4xx replies and dropped connections there are retried (reconnecting, with backoff);
* a 5xx reply is permanent: the outcome is ``refused``; at RCPT it is a hard bounce (the address
  is bad), which the caller records on the suppression list;
* a connection that drops *after* the body was sent, before the server's reply, may have delivered
  the message: the outcome is ``unknown`` and it is never retried (at-most-once).
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from types import TracebackType
from typing import Literal

from paywall.config import Settings
from paywall.mail.message import to_bytes
from paywall.mail.settings import MailerSettings, mailer_settings

log = logging.getLogger(__name__)

Status = Literal["sent", "refused", "unknown"]


@dataclass(frozen=True)
class Delivery:
    """What happened to one message. ``hard_bounce``: the server refused the address itself."""

    status: Status
    code: int | None = None
    detail: str = ""
    hard_bounce: bool = False

    @property
    def error(self) -> str:
        return f"{self.code} {self.detail}".strip() if self.code else self.detail


class TransientFailure(Exception):
    """Every attempt failed before the message was transmitted: it was not delivered; try later."""


class MailConfigError(Exception):
    """The server refused our login or TLS: no message can be sent until the settings change."""


class _Refused(Exception):
    def __init__(self, stage: str, code: int, detail: bytes | str) -> None:
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else detail
        super().__init__(f"{stage}: {code} {text}")
        self.stage = stage
        self.code = code
        self.detail = text


class _Ambiguous(Exception):
    """The connection failed after the body was sent: the server may have accepted it."""


_LEADING_DOT = re.compile(rb"(?m)^\.")
_BARE_EOL = re.compile(rb"\r\n|\r|\n")
# Enhanced status 5.7.x is policy (spam, authentication of the sender): not the address's fault.
_POLICY_CODE = re.compile(r"\b5\.7\.\d+\b")


def _dot_stuff(payload: bytes) -> bytes:
    data = _LEADING_DOT.sub(b"..", _BARE_EOL.sub(b"\r\n", payload))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpTransport:
    """Sends messages over one SMTP connection, opened on first use and reopened after a failure."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        rate_per_minute: int = 0,
        max_attempts: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError("security must be starttls, tls or none")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.rate_per_minute = rate_per_minute
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        self._conn: smtplib.SMTP | None = None
        self._next_slot: float | None = None
        self.connections_opened = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_per_minute: int | None = None) -> SmtpTransport:
        """A transport for the configured relay (call paywall.mail.settings.require_mail first)."""
        m = settings.mail
        ms: MailerSettings = mailer_settings(settings)
        return cls(
            host=m.smtp_host,
            port=m.smtp_port,
            security=m.smtp_security,
            username=m.smtp_username,
            password=settings.secrets.smtp_password,
            rate_per_minute=ms.rate_per_minute if rate_per_minute is None else rate_per_minute,
            max_attempts=ms.max_attempts,
            backoff_seconds=ms.backoff_seconds,
            timeout_seconds=ms.timeout_seconds,
        )

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_seconds, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        try:
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(conn)
            raise MailConfigError(
                f"SMTP login refused ({exc.smtp_code}): check PAYWALL_SMTP_USERNAME/PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError:
            _quietly_close(conn)
            raise MailConfigError(
                "the SMTP server does not offer STARTTLS: check PAYWALL_SMTP_SECURITY"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            _quietly_close(conn)
            raise MailConfigError(
                f"the SMTP server's certificate is not valid: {exc.verify_message}"
            ) from None
        except BaseException:
            _quietly_close(conn)
            raise
        self.connections_opened += 1
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    def close(self) -> None:
        """Say QUIT and close the connection (the next send reconnects)."""
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._drop()

    # -- sending ----------------------------------------------------------------------------

    def _throttle(self) -> None:
        if self.rate_per_minute <= 0:
            return
        interval = 60.0 / self.rate_per_minute
        now = self._monotonic()
        if self._next_slot is not None and now < self._next_slot:
            self._sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + interval

    def _transmit(self, conn: smtplib.SMTP, sender: str, recipient: str, payload: bytes) -> None:
        conn.ehlo_or_helo_if_needed()
        options: list[str] = []
        if not (sender + recipient).isascii() and conn.has_extn("smtputf8"):
            options.append("SMTPUTF8")
        code, resp = conn.mail(sender, options)
        if code != 250:
            _quietly_rset(conn)
            raise _Refused("MAIL", code, resp)
        code, resp = conn.rcpt(recipient)
        if code not in (250, 251):
            _quietly_rset(conn)
            raise _Refused("RCPT", code, resp)
        code, resp = conn.docmd("DATA")
        if code != 354:
            _quietly_rset(conn)
            raise _Refused("DATA", code, resp)
        try:
            conn.send(_dot_stuff(payload))
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Ambiguous(f"connection lost after the message was sent: {exc}") from None
        if code != 250:
            raise _Refused("end of DATA", code, resp)

    def send(self, msg: Message, *, envelope_from: str | None = None) -> Delivery:
        """Send one message to its single To address; retries transient failures.

        Returns a Delivery (``sent``, ``refused`` or ``unknown``); raises TransientFailure when
        every attempt failed before the body went out, MailConfigError on a login/TLS refusal.
        """
        recipients = [addr for _, addr in getaddresses(msg.get_all("To", [])) if addr]
        if len(recipients) != 1:
            raise ValueError("one recipient per message")
        sender = envelope_from or next((a for _, a in getaddresses([str(msg["From"])]) if a), "")
        payload = to_bytes(msg)
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            self._throttle()
            try:
                conn = self._connection()
                self._transmit(conn, sender, recipients[0], payload)
                return Delivery("sent", 250)
            except _Ambiguous as exc:
                self._drop()
                return Delivery("unknown", None, str(exc))
            except _Refused as exc:
                if 500 <= exc.code < 600:
                    hard = exc.stage == "RCPT" and not _POLICY_CODE.search(exc.detail)
                    return Delivery("refused", exc.code, exc.detail, hard_bounce=hard)
                last_error = str(exc)
                if exc.code == 421:  # the server is closing the channel
                    self._drop()
            except smtplib.SMTPResponseException as exc:  # e.g. a 4xx/5xx greeting
                self._drop()
                last_error = f"{exc.smtp_code} {exc.smtp_error!r}"
            except (smtplib.SMTPException, OSError) as exc:  # dropped or refused connection, timeout
                self._drop()
                last_error = f"{type(exc).__name__}: {exc}"
            log.info("smtp attempt %d/%d failed: %s", attempt, self.max_attempts, last_error)
            if attempt < self.max_attempts:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise TransientFailure(last_error)


def _quietly_rset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        conn.rset()


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()
