"""Building a message: multipart/alternative text and HTML, Message-ID, Date, and for appeals the
RFC 8058 one-click unsubscribe headers."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from paywall import clock

# CRLF line ends for SMTP, and no folding below 998 characters: List-Unsubscribe must reach the
# receiver on one line (folding it has broken DKIM verification in other stacks).
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)


def address_domain(address: str) -> str:
    """The domain of an address (``Name <a@b>`` or ``a@b``), for Message-IDs."""
    addr = next((a for _, a in getaddresses([address]) if a), address)
    return addr.rpartition("@")[2] or "localhost"


def _recipient(email: str, name: str | None) -> Address | str:
    if name:
        try:
            return Address(display_name=name, addr_spec=email)
        except (ValueError, IndexError):
            pass  # an unusual address: send to it bare rather than fail on the display name
    return email


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
) -> EmailMessage:
    """A message ready for SMTP. ``unsubscribe_url`` adds List-Unsubscribe and List-Unsubscribe-Post
    (appeals only: receipts and payment notices are not bulk mail and carry neither)."""
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = sender
    msg["To"] = _recipient(to, to_name)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = make_msgid(domain=address_domain(sender))
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg
