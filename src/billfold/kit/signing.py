"""The contract for anything that signs with an Ed25519 key (audit checkpoints, JWKS keys).

Implementations live with the key hierarchy (`billfold.keys`), which may keep the private
key in an HSM; consumers depend only on this protocol.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Signer"]


class Signer(Protocol):
    @property
    def key_id(self) -> str:
        """Stable id of the key version, published with the public key (JWKS `kid`)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature (RFC 8032) over `message`."""
        ...

    def public_key_raw(self) -> bytes:
        """The 32-byte raw Ed25519 public key."""
        ...
