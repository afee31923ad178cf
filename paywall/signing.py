"""Signed tokens (JWT, RFC 7519, EdDSA over Ed25519) and the public keys that verify them.

One key ring serves every token this service hands out: access tokens the site verifies offline,
unsubscribe links, and personal links in mail. Each token names its ``purpose`` (claim ``pur``), so
a token made for one use is refused for another.

Keys: ``PAYWALL_SIGNING_KEY`` holds one or more Ed25519 private keys in PEM, concatenated. The first
signs; all of them verify and are published at ``/.well-known/jwks.json``. To rotate without
downtime: put the new key first and keep the old one after it until the old tokens have expired,
then remove it. In development, with no key set, one is generated once under ``var/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paywall import clock
from paywall.config import Settings

log = logging.getLogger(__name__)

DEV_KEY_PATH = Path("var") / "signing-key.pem"
ALGORITHM = "EdDSA"
# Seconds of clock difference tolerated between this service and whoever checks a token.
LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """A token that is malformed, tampered with, expired, or made for another purpose."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey

    def jwk(self) -> dict[str, str]:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


def _key_from_private(private: Ed25519PrivateKey) -> SigningKey:
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # RFC 7638 thumbprint: SHA-256 of the canonical JWK members, so the kid is stable and derivable.
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"), sort_keys=True
    )
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())[:16]
    return SigningKey(kid=kid, private=private, public=public)


def parse_pem_keys(text: str) -> list[SigningKey]:
    """Every Ed25519 private key in a PEM bundle, in order."""
    keys = []
    marker = "-----END PRIVATE KEY-----"
    for block in text.split(marker):
        if "-----BEGIN" not in block:
            continue
        pem = (block.strip() + "\n" + marker + "\n").encode()
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("PAYWALL_SIGNING_KEY must hold Ed25519 private keys")
        keys.append(_key_from_private(private))
    if not keys:
        raise ValueError("PAYWALL_SIGNING_KEY holds no PEM private key")
    return keys


def generate_pem() -> str:
    """A new Ed25519 private key in PEM (PKCS#8), e.g. for `paywall keys signing-key`."""
    private = Ed25519PrivateKey.generate()
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _dev_keys(path: Path) -> list[SigningKey]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = generate_pem()
        # Create with 0600 atomically; if another worker won the race, read theirs.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(pem)
            log.warning("PAYWALL_SIGNING_KEY is not set: generated a development signing key at %s", path)
    return parse_pem_keys(path.read_text())


_lock = threading.Lock()
_rings: dict[str, list[SigningKey]] = {}


def keyring(settings: Settings) -> list[SigningKey]:
    """The signing keys: the first signs, all verify."""
    source = settings.secrets.signing_key
    cache_key = source or f"dev:{DEV_KEY_PATH.resolve()}"
    with _lock:
        ring = _rings.get(cache_key)
        if ring is None:
            ring = parse_pem_keys(source) if source else _dev_keys(DEV_KEY_PATH)
            _rings[cache_key] = ring
    return ring


def sign(
    settings: Settings, claims: dict[str, Any], *, purpose: str, ttl: dt.timedelta
) -> tuple[str, dt.datetime]:
    """A token carrying ``claims`` for ``purpose``, valid for ``ttl``; returns (token, expires_at)."""
    key = keyring(settings)[0]
    now = clock.now().replace(microsecond=0)
    expires = now + ttl
    payload = {**claims, "pur": purpose, "iat": int(now.timestamp()), "exp": int(expires.timestamp())}
    token = jwt.encode(payload, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
    return token, expires


def verify(settings: Settings, token: str, *, purpose: str | tuple[str, ...]) -> dict[str, Any]:
    """The claims of a valid token made for ``purpose`` (one of them); raises InvalidToken otherwise."""
    purposes = (purpose,) if isinstance(purpose, str) else purpose
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    keys = {k.kid: k for k in keyring(settings)}
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise InvalidToken("unknown signing key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "pur"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    if claims.get("pur") not in purposes:
        raise InvalidToken("token made for another purpose")
    return claims


def jwks(settings: Settings) -> dict[str, list[dict[str, str]]]:
    """The public JWK set, every key of the ring (several while rotating)."""
    return {"keys": [k.jwk() for k in keyring(settings)]}
