"""Published Ed25519 signing keys (JWKS, RFC 7517 / RFC 8037): to verify audit checkpoints
and signed documents."""

from __future__ import annotations

from typing import cast

from billfold.client.resources._base import Resource
from billfold.client.types import JsonWebKeySet

__all__ = ["SigningKeys"]

PLATFORM_JWKS_PATH = "/.well-known/jwks.json"


class SigningKeys(Resource):
    def tenant(self) -> JsonWebKeySet:
        """The calling key's tenant's signing keys (any API key of the tenant)."""
        return cast(JsonWebKeySet, self._transport.request("GET", "/v1/jwks"))

    def platform(self) -> JsonWebKeySet:
        """The platform's signing keys, active and verify-only (a public route: sent
        without the API key)."""
        answer = self._transport.request("GET", PLATFORM_JWKS_PATH, authenticated=False)
        return cast(JsonWebKeySet, answer)
