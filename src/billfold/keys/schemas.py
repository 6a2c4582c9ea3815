"""API models of the key hierarchy: the JSON Web Key Set."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["JsonWebKey", "JsonWebKeySet"]


class JsonWebKey(BaseModel):
    """An Ed25519 public key (RFC 8037 OKP)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    """base64url (no padding) of the 32-byte public key."""
    kid: str
    """`sig_<hex>`: the key version that made a signature."""
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey]
