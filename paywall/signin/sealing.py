"""Sealed outbox data: a sign-in code waits in the outbox encrypted, never readable in the table.

A sign-in mail is queued in the request's transaction and sent by the worker a moment later, so
the code and link must sit in the database in between. They are sealed with AES-256-GCM under a
key derived (HKDF-SHA256) from the first signing key, bound to the message's kind and recipient,
and blanked in the transaction that claims the message for sending (paywall/mail/delivery.py). A database dump or backup
therefore shows no usable code. Opening tries every key of the ring, so rotating the signing key
does not lose a mail queued a second before.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paywall import signing
from paywall.config import Settings

INFO = b"paywall outbox seal v1"
NONCE_BYTES = 12


# Derived keys by signing-key id: HKDF per sealed mail would be wasted work on every sign-in.
_derived: dict[str, bytes] = {}


def _aes_key(key: signing.SigningKey) -> bytes:
    derived = _derived.get(key.kid)
    if derived is None:
        raw = key.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(raw)
        _derived[key.kid] = derived
    return derived


def _aad(kind: str, to_email: str) -> bytes:
    return f"{kind}\n{to_email.strip().lower()}".encode()


def seal(settings: Settings, kind: str, to_email: str, secret: dict[str, Any]) -> str:
    """``secret`` as JSON, encrypted and authenticated for one (kind, recipient); URL-safe base64."""
    key = signing.keyring(settings)[0]
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(secret, separators=(",", ":")).encode()
    sealed = AESGCM(_aes_key(key)).encrypt(nonce, plain, _aad(kind, to_email))
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(settings: Settings, kind: str, to_email: str, sealed: str) -> dict[str, Any] | None:
    """What ``seal`` sealed for this (kind, recipient), or None if no key of the ring opens it."""
    try:
        blob = base64.urlsafe_b64decode(sealed.encode())
    except (ValueError, TypeError):
        return None
    nonce, body = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
    for key in signing.keyring(settings):
        try:
            plain = AESGCM(_aes_key(key)).decrypt(nonce, body, _aad(kind, to_email))
        except (InvalidTag, ValueError):
            continue
        value = json.loads(plain)
        return value if isinstance(value, dict) else None
    return None
