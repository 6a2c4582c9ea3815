"""The audit log's local checkpoint signer: Ed25519 (RFC 8032) via ``cryptography``.

The key hierarchy (``billfold.keys``) will provide the production signer; until then, and
for the embedded default, the key comes from ``BILLFOLD_AUDIT_SIGNING_KEY`` (the 32-byte
Ed25519 seed as 64 hex characters, a secret) or, when that is unset, from the PKCS#8 PEM
file ``BILLFOLD_AUDIT_SIGNING_KEY_PATH``, generated (mode 0600) the first time it is
needed. Anything satisfying :class:`billfold.kit.signing.Signer` can replace it
(``AuditService(signer_provider=...)``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import SecretStr

from billfold.audit.errors import AuditSigningKeyInvalid
from billfold.kit.signing import Signer

__all__ = [
    "LocalEd25519Signer",
    "key_id_for",
    "load_local_signer",
    "verify_signature",
]

_KEY_FILE_MODE = 0o600
_KEY_FILE_BYTES_MAX = 4096


def key_id_for(public_key: bytes) -> str:
    """A stable id for a public key: ``audit-ed25519-`` and 16 hex of its SHA-256."""
    return "audit-ed25519-" + hashlib.sha256(public_key).hexdigest()[:16]


class LocalEd25519Signer:
    """An Ed25519 key held in this process."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_id = key_id_for(self._public)

    @classmethod
    def from_seed(cls, seed: bytes) -> LocalEd25519Signer:
        if len(seed) != 32:
            raise AuditSigningKeyInvalid("An Ed25519 seed is 32 bytes (64 hex characters).")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> LocalEd25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def public_key_raw(self) -> bytes:
        return self._public

    def private_key_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def verify_signature(*, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _from_file(path: Path) -> LocalEd25519Signer:
    data = path.read_bytes()[:_KEY_FILE_BYTES_MAX]
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as error:
        raise AuditSigningKeyInvalid(f"{path} is not a PEM private key.") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditSigningKeyInvalid(f"{path} does not hold an Ed25519 key.")
    return LocalEd25519Signer(key)


def _create_file(path: Path) -> LocalEd25519Signer:
    signer = LocalEd25519Signer.generate()
    try:
        # O_EXCL: of two processes starting at once, one creates and the other reads.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_FILE_MODE)
    except FileExistsError:
        return _from_file(path)
    with os.fdopen(descriptor, "wb") as file:
        file.write(signer.private_key_pem())
        file.flush()
        os.fsync(file.fileno())
    return signer


def load_local_signer(*, key: SecretStr | None, key_path: str) -> Signer:
    """The signer from the seed in ``key`` (64 hex characters) or, when None, from the key
    file at ``key_path``, created on first use."""
    if key is not None:
        text = key.get_secret_value().strip()
        try:
            seed = bytes.fromhex(text)
        except ValueError as error:
            raise AuditSigningKeyInvalid(
                "BILLFOLD_AUDIT_SIGNING_KEY is a 32-byte seed in 64 hex characters."
            ) from error
        return LocalEd25519Signer.from_seed(seed)
    path = Path(key_path)
    if path.exists():
        return _from_file(path)
    return _create_file(path)
