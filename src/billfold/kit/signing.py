"""The contracts for signing with Ed25519 keys (audit checkpoints, JWKS keys).

Implementations live with the key hierarchy (`billfold.keys`), which may keep the private
key in an HSM; consumers (the audit log) depend only on these protocols, and the
application wires one to the other (`billfold.app`, `billfold.cli`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Signer", "SigningKeys"]


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


class SigningKeys(Protocol):
    """The versioned keys of one signing purpose: the one that signs now, and every one a
    verifier should still trust (rotated-out versions included). Both are read in the
    caller's transaction, so a rotation committed by another process is seen at once."""

    async def active_signer(self, session: AsyncSession, *, now_ns: int) -> Signer:
        """The active version's signer (made on first use, in `session`'s transaction)."""
        ...

    async def trusted_keys(self, session: AsyncSession) -> Mapping[str, bytes]:
        """Key id → raw 32-byte Ed25519 public key of every version still published."""
        ...
