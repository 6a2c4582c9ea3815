"""A software WebAuthn authenticator for tests: a real P-256 credential, a `none`
attestation, CBOR-encoded attestation objects and authenticator data, signed assertions.

py_webauthn decodes CBOR; encoding is done here with a minimal encoder for what WebAuthn
needs (unsigned and negative integers, byte strings, text strings, maps), shortest form,
as CTAP2's canonical encoding asks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

_FLAG_USER_PRESENT = 0x01
_FLAG_USER_VERIFIED = 0x04
_FLAG_ATTESTED_CREDENTIAL = 0x40


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for additional, size, fmt in ((24, 1, ">B"), (25, 2, ">H"), (26, 4, ">I"), (27, 8, ">Q")):
        if value < 1 << (8 * size):
            return bytes([major << 5 | additional]) + struct.pack(fmt, value)
    raise ValueError("integer too large for CBOR")


def cbor_encode(value: object) -> bytes:
    """CBOR (RFC 8949) for int, bytes, str and dict (keys in the given order)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not needed here")
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode()
        return _head(3, len(encoded)) + encoded
    if isinstance(value, dict):
        items = b"".join(cbor_encode(key) + cbor_encode(item) for key, item in value.items())
        return _head(5, len(value)) + items
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SoftwareAuthenticator:
    """One passkey on one relying party, kept in memory."""

    def __init__(self, *, rp_id: str, origin: str) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle: bytes | None = None

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
        return cbor_encode(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def authenticator_data(self, *, attested: bool, sign_count: int) -> bytes:
        flags = _FLAG_USER_PRESENT | _FLAG_USER_VERIFIED
        data = hashlib.sha256(self.rp_id.encode()).digest()
        if attested:
            flags |= _FLAG_ATTESTED_CREDENTIAL
        data += bytes([flags]) + sign_count.to_bytes(4, "big")
        if attested:
            data += bytes(16)  # AAGUID: all zero, as a `none` attestation may give
            data += len(self.credential_id).to_bytes(2, "big") + self.credential_id
            data += self.cose_public_key()
        return data

    def _client_data(self, *, kind: str, challenge: str, origin: str | None) -> bytes:
        document = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps(document, separators=(",", ":")).encode()

    def create(self, options: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """The JSON a browser's `navigator.credentials.create()` would give for `options`."""
        assert options["rp"]["id"] == self.rp_id
        self.user_handle = base64.urlsafe_b64decode(options["user"]["id"] + "==")
        client_data = self._client_data(
            kind="webauthn.create", challenge=options["challenge"], origin=origin
        )
        attestation_object = cbor_encode(
            {
                "fmt": "none",
                "attStmt": {},
                "authData": self.authenticator_data(attested=True, sign_count=self.sign_count),
            }
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        sign_count: int | None = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        """The JSON of `navigator.credentials.get()`: an assertion signed by the key."""
        if sign_count is None:
            self.sign_count += 1
            sign_count = self.sign_count
        client_data = self._client_data(
            kind="webauthn.get", challenge=options["challenge"], origin=origin
        )
        authenticator_data = self.authenticator_data(attested=False, sign_count=sign_count)
        signed = authenticator_data + hashlib.sha256(client_data).digest()
        signature = self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(authenticator_data),
            "signature": b64url(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }
