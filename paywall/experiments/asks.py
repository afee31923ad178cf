"""The "ask": what the appeal answer hands the widget, and the widget sends back with its events.

An ask says which channel showed which experiment's variant to whom, and when it was handed out.
It is HMAC-signed (not a JWT: the events route checks thousands a second, and an HMAC costs
microseconds where an Ed25519 verification costs a hundred), so the browser cannot invent a
variant, an experiment or a subject for the events it reports. It is not secret: the subject in it
is the browser's own key or the reader id the page already knows.

``subject_hash`` is what stands for a subject in stored events: a keyed hash, so a stored event
names no reader and no browser, yet one subject's events can still be counted together.

Both keys are derived from the first signing key (PAYWALL_SIGNING_KEY), so nothing new has to be
configured. Rotating that key makes asks in flight invalid (their events are dropped, at most
``ASK_TTL`` of them) and starts new subject hashes; daily counts are unaffected.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from paywall import signing
from paywall.config import Settings

# How long after the appeal was answered its events still count (a tab left open over night).
ASK_TTL = dt.timedelta(hours=24)
VERSION = "1"
SEPARATOR = "\x1f"


class InvalidAsk(Exception):
    """An ask that is malformed, tampered with, expired or signed with another key."""


@dataclass(frozen=True)
class Ask:
    """``experiment``/``variant`` are empty when no experiment runs on the channel (the plain copy)."""

    channel: str
    experiment: str
    variant: str
    # The access subject: a site reader id or " anon:" + browser id.
    subject: str
    issued: dt.datetime
    # A staff preview (never counted): the widget sends no events for it.
    preview: bool = False
    # Random per ask (encode_ask draws one): two page views in the same second are two asks.
    nonce: str = ""


# Derived keys per signing key id (the kid is a hash of the public key, so it names one key).
_DERIVED: dict[str, tuple[bytes, bytes]] = {}


def _keys(settings: Settings) -> tuple[bytes, bytes]:
    """(the ask MAC key, the subject hash key), derived from the first signing key."""
    key = signing.keyring(settings)[0]
    keys = _DERIVED.get(key.kid)
    if keys is None:
        raw = key.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        keys = (
            hashlib.sha256(b"paywall appeal ask\x00" + raw).digest(),
            hashlib.sha256(b"paywall appeal subject\x00" + raw).digest(),
        )
        _DERIVED[key.kid] = keys
    return keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_ask(settings: Settings, ask: Ask) -> str:
    """``<payload>.<mac>``, both URL-safe base64."""
    fields = (
        VERSION,
        ask.channel,
        ask.experiment,
        ask.variant,
        ask.subject,
        str(int(ask.issued.timestamp())),
    )
    nonce = ask.nonce or secrets.token_urlsafe(6)
    payload = SEPARATOR.join((*fields, "p" if ask.preview else "", nonce)).encode()
    mac = hmac.new(_keys(settings)[0], payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def decode_ask(settings: Settings, token: object, now: dt.datetime) -> Ask:
    """The ask in ``token``; raises InvalidAsk unless it is ours, whole and under ``ASK_TTL`` old."""
    if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
        raise InvalidAsk("not an ask")
    body, mac = token.split(".")
    try:
        payload, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise InvalidAsk("not an ask") from None
    expected = hmac.new(_keys(settings)[0], payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(given, expected):
        raise InvalidAsk("bad signature")
    parts = payload.decode(errors="replace").split(SEPARATOR)
    if len(parts) != 8 or parts[0] != VERSION or not parts[5].isdigit():
        raise InvalidAsk("not an ask")
    issued = dt.datetime.fromtimestamp(int(parts[5]), dt.UTC)
    if not issued - dt.timedelta(minutes=5) <= now <= issued + ASK_TTL:
        raise InvalidAsk("expired")
    return Ask(parts[1], parts[2], parts[3], parts[4], issued, preview=parts[6] == "p", nonce=parts[7])


def subject_hash(settings: Settings, subject: str) -> str:
    """The keyed hash that stands for ``subject`` in stored events (22 characters)."""
    return _b64(hmac.new(_keys(settings)[1], subject.encode(), hashlib.sha256).digest()[:16])


def ask_key(token: str) -> str:
    """What names one ask (one page view's appeal) in stored rows: its MAC, 22 characters.

    Only for a token ``decode_ask`` accepted: then the MAC is ours and unique per ask."""
    return token.rpartition(".")[2]
