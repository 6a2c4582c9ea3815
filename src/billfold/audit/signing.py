"""Ed25519 (RFC 8032) for the audit log: verifying checkpoint signatures, and an in-memory
signer for tools and tests.

Checkpoints are signed by the key hierarchy's platform signing key of purpose ``audit``
(``billfold.keys.signing.HierarchySigningKeys``, wired in by the application as a
:class:`billfold.kit.signing.SigningKeys`): its private seed is envelope-encrypted under
the keystore like any field, and its public key is published in the JWKS. No audit key is
ever written to a file here.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from billfold.audit.errors import AuditSigningKeyInvalid

__all__ = ["LocalEd25519Signer", "verify_signature"]


class LocalEd25519Signer:
    """An Ed25519 key held in this process's memory only (tests, benchmarks)."""

    def __init__(self, private_key: Ed25519PrivateKey, *, key_id: str) -> None:
        self._private_key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_id = key_id

    @classmethod
    def from_seed(cls, seed: bytes, *, key_id: str) -> LocalEd25519Signer:
        if len(seed) != 32:
            raise AuditSigningKeyInvalid("An Ed25519 seed is 32 bytes.")
        return cls(Ed25519PrivateKey.from_private_bytes(seed), key_id=key_id)

    @classmethod
    def generate(cls, *, key_id: str) -> LocalEd25519Signer:
        return cls(Ed25519PrivateKey.generate(), key_id=key_id)

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def public_key_raw(self) -> bytes:
        return self._public


def verify_signature(*, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
