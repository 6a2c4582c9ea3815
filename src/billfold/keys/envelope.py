"""Envelope encryption's pure parts: the associated data and the field ciphertext format.

A field ciphertext is::

    0x01 | data key id (16 bytes, UUID) | nonce (12 bytes) | AES-256-GCM ciphertext and tag

The associated data is a canonical, length-prefixed encoding (4-byte big-endian length,
then the bytes) of ``("billfold.field.v1", tenant, purpose, table, column, row id, data
key id)``: a ciphertext copied to another tenant, table, column or row, or relabelled with
another data key, fails authentication. Data keys are wrapped the same way under their
key-encryption key (``"billfold.dek.v1"``), and key-encryption keys under the root key
(``"billfold.kek.v1"``).
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billfold.keys.errors import DecryptionFailed

__all__ = [
    "FIELD_FORMAT_VERSION",
    "FIELD_OVERHEAD_BYTES",
    "KEY_BYTES",
    "NONCE_BYTES",
    "FieldContext",
    "canonical_aad",
    "field_aad",
    "open_field",
    "parse_field",
    "seal",
    "seal_field",
    "unseal",
]

KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12
"""The GCM nonce size NIST SP 800-38D recommends; random per encryption."""
TAG_BYTES = 16
FIELD_FORMAT_VERSION = 1
_HEADER = struct.Struct(">B16s12s")
FIELD_OVERHEAD_BYTES = _HEADER.size + TAG_BYTES
_PART_LENGTH_MAX = 0xFFFF_FFFF
_LENGTH = struct.Struct(">I")
_PREFIXES_CACHED_MAX = 4096


@dataclass(frozen=True, slots=True)
class FieldContext:
    """Where a ciphertext belongs: it decrypts only here."""

    tenant_id: uuid.UUID
    purpose: str
    table: str
    column: str
    row_id: str


def canonical_aad(*parts: str | bytes) -> bytes:
    """Each part as a 4-byte big-endian length and its bytes (strings as UTF-8): no two
    different tuples encode alike, whatever bytes the parts hold."""
    chunks: list[bytes] = []
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode()
        if len(raw) > _PART_LENGTH_MAX:
            raise ValueError("an associated-data part is at most 2**32 - 1 bytes")
        chunks.append(_LENGTH.pack(len(raw)))
        chunks.append(raw)
    return b"".join(chunks)


@functools.lru_cache(maxsize=_PREFIXES_CACHED_MAX)
def _field_aad_prefix(tenant_id: uuid.UUID, purpose: str, table: str, column: str) -> bytes:
    # The encoding is a concatenation, so the parts every row of a column shares are
    # encoded once: the per-field cost is the row id and the data key id.
    return canonical_aad("billfold.field.v1", tenant_id.bytes, purpose, table, column)


def field_aad(context: FieldContext, data_key_id: uuid.UUID) -> bytes:
    prefix = _field_aad_prefix(context.tenant_id, context.purpose, context.table, context.column)
    return prefix + canonical_aad(context.row_id, data_key_id.bytes)


def seal(cipher: AESGCM, plaintext: bytes, *, aad: bytes) -> bytes:
    """nonce | ciphertext and tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plaintext, aad)


def unseal(cipher: AESGCM, sealed: bytes, *, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("The ciphertext is too short.")
    try:
        return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as error:
        raise DecryptionFailed() from error


def seal_field(
    cipher: AESGCM, plaintext: bytes, *, context: FieldContext, data_key_id: uuid.UUID
) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    header = _HEADER.pack(FIELD_FORMAT_VERSION, data_key_id.bytes, nonce)
    return header + cipher.encrypt(nonce, plaintext, field_aad(context, data_key_id))


def _header(ciphertext: bytes) -> tuple[uuid.UUID, bytes]:
    if len(ciphertext) < FIELD_OVERHEAD_BYTES:
        raise DecryptionFailed("The ciphertext is too short.")
    version, key_id, nonce = _HEADER.unpack_from(ciphertext)
    if version != FIELD_FORMAT_VERSION:
        raise DecryptionFailed(f"Unknown ciphertext format version {version}.")
    return uuid.UUID(bytes=key_id), nonce


def parse_field(ciphertext: bytes) -> uuid.UUID:
    """The data key id a field ciphertext names (DecryptionFailed when malformed)."""
    return _header(ciphertext)[0]


def open_field(cipher: AESGCM, ciphertext: bytes, *, context: FieldContext) -> bytes:
    data_key_id, nonce = _header(ciphertext)
    try:
        return cipher.decrypt(nonce, ciphertext[_HEADER.size :], field_aad(context, data_key_id))
    except InvalidTag as error:
        raise DecryptionFailed() from error
