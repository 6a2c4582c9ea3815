"""Stored responses sealed under a key that only their own request gives.

A kept response is replayed for a day or more, and some hold personal data: a sign-up's
answer names the user's email and phone, and stays after the user is erased. With a
fingerprint key (`IdempotencyMiddleware`'s `fingerprint_key`, derived from the root key),
each response is stored sealed (AES-256-GCM, its status and headers bound in) under a key
derived from that fingerprint key and from the request itself (its method, path, query,
body and media type; HMAC-SHA-256, like the fingerprint, under another key). Only the same
request again, the one that already holds the data, opens it: whoever reads the database
reads nothing, and an erased user's answers are as good as gone.

Sealed rows carry the internal header `SEALED_HEADER` (never sent); rows stored before
sealing carry none and are replayed as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billfold.kit.errors import InvariantViolation
from billfold.kit.http.idempotency_store import StoredResponse

__all__ = ["SEALED_HEADER", "SEAL_OVERHEAD_BYTES", "response_key", "seal", "unseal"]

SEALED_HEADER = "x-billfold-sealed"
_SEALED_VALUE = "aes-256-gcm.v1"
_NONCE_BYTES = 12
SEAL_OVERHEAD_BYTES = _NONCE_BYTES + 16
"""What sealing adds to a body: the nonce and the tag."""
_KEY_LABEL = b"billfold.idempotency.response-key.v1"


def response_key(fingerprint_key: bytes, fingerprint_of: Callable[[bytes], str]) -> bytes:
    """The key a request's response is sealed under: its fingerprint (`fingerprint_of`,
    given a key) under a key of its own, derived from the fingerprint key, so the stored
    fingerprint says nothing of it."""
    derived = hmac.new(fingerprint_key, _KEY_LABEL, hashlib.sha256).digest()
    return bytes.fromhex(fingerprint_of(derived))


def _bound(status: int, headers: tuple[tuple[str, str], ...]) -> bytes:
    return json.dumps([status, [list(header) for header in headers]]).encode()


def seal(stored: StoredResponse, key: bytes) -> StoredResponse:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, stored.body, _bound(stored.status, stored.headers))
    headers = (*stored.headers, (SEALED_HEADER, _SEALED_VALUE))
    return StoredResponse(status=stored.status, headers=headers, body=nonce + sealed)


def unseal(stored: StoredResponse, key: bytes | None) -> StoredResponse:
    """`stored` as it was before `seal`; a row stored unsealed as it is."""
    headers = tuple(header for header in stored.headers if header[0] != SEALED_HEADER)
    if len(headers) == len(stored.headers):
        return stored
    if key is None:
        # Its fingerprint is keyed, so only a request fingerprinted with the key matched it.
        raise InvariantViolation("a sealed response is replayed only with the fingerprint key")
    try:
        body = AESGCM(key).decrypt(
            stored.body[:_NONCE_BYTES],
            stored.body[_NONCE_BYTES:],
            _bound(stored.status, headers),
        )
    except InvalidTag as error:
        raise InvariantViolation("a stored response does not open under its request") from error
    return StoredResponse(status=stored.status, headers=headers, body=body)
