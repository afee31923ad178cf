"""Building a message: multipart/alternative text and HTML, Message-ID, Date, and for appeals the
RFC 8058 one-click unsubscribe headers.

Built with the email package's compat32 API: headers are stored as given (encoded here) instead
of being parsed back into objects, which made building a message the slowest step of a send.
"""

from __future__ import annotations

import secrets
from email._policybase import Compat32
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from typing import Any

from paywall import clock


class _WirePolicy(Compat32):
    """compat32 with CRLF line ends that writes our (already encoded, ASCII) headers as they are.

    No folding: List-Unsubscribe reaches the receiver on one line (folding it has broken DKIM
    verification in other stacks), and the stock fold re-parsed every header on every message.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and value.isascii() and "\n" not in value and "\r" not in value:
            return f"{name}: {value}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]


MAIL_POLICY = _WirePolicy(linesep="\r\n", max_line_length=0)

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable in transit, unlike base64


def address_domain(address: str) -> str:
    """The domain of an address (``Name <a@b>`` or ``a@b``), for Message-IDs."""
    addr = next((a for _, a in getaddresses([address]) if a), address)
    return addr.rpartition("@")[2] or "localhost"


def _header(value: str) -> str:
    value = " ".join(value.split())  # no CR/LF from templates or data can start a new header
    return value if value.isascii() else Header(value, "utf-8").encode()


def _part(text: str, subtype: str) -> MIMEText:
    if text.isascii() and all(len(line) <= 900 for line in text.splitlines()):
        return MIMEText(text, subtype, "us-ascii")
    return MIMEText(text, subtype, _UTF8_QP)  # type: ignore[arg-type]


def build_message(
    *,
    sender: str,
    to: str,
    to_name: str | None = None,
    subject: str,
    text: str,
    html: str | None,
    unsubscribe_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Message:
    """A message ready for SMTP. ``unsubscribe_url`` adds List-Unsubscribe and List-Unsubscribe-Post
    (appeals only: receipts and payment notices are not bulk mail and carry neither)."""
    msg: Message = MIMEMultipart("alternative") if html is not None else _part(text, "plain")
    if html is not None:
        # Our own random boundary: the generator's default searches the text for a safe one with a
        # freshly compiled regex per message. "=_" never appears in quoted-printable text.
        msg.set_boundary(f"=_{secrets.token_hex(16)}")
    msg["From"] = _header(sender) if sender.isascii() else formataddr(getaddresses([sender])[0], "utf-8")
    msg["To"] = formataddr((" ".join((to_name or "").split()), to.strip()), "utf-8")
    msg["Subject"] = _header(subject)
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = make_msgid(domain=address_domain(sender))
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (headers or {}).items():
        msg[name] = _header(value)
    if html is not None:
        msg.attach(_part(text, "plain"))
        msg.attach(_part(html, "html"))
    return msg


def to_bytes(msg: Message) -> bytes:
    """The message as sent on the wire (CRLF line ends)."""
    return msg.as_bytes(policy=MAIL_POLICY)
