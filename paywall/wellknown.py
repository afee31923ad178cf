"""Public keys for verifying this service's tokens: GET /.well-known/jwks.json."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from paywall import signing
from paywall.api import Blueprint
from paywall.context import current_settings

blp = Blueprint("wellknown", __name__, description="Public keys for offline token verification")


class JwkSchema(Schema):
    kty = fields.String(required=True)
    crv = fields.String(required=True)
    x = fields.String(required=True)
    kid = fields.String(required=True)
    use = fields.String(required=True)
    alg = fields.String(required=True)


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


@blp.route("/.well-known/jwks.json")
@blp.response(200, JwksSchema)
def jwks() -> Any:
    """The Ed25519 public keys (JWK set); several while a key is being rotated. Cacheable."""
    body = signing.jwks(current_settings())
    return body, 200, {"Cache-Control": "public, max-age=300"}
