"""Device signatures, made as the server checks them (`billfold.identity.users.signatures`).

A device binds its public key once (`BillfoldUser.me.devices.bind(signer=…, password=…)`:
the password is asked again) and then signs requests with the private key, which never
leaves it. A signed request carries four
headers, `Billfold-Device-Id`, `-Timestamp` (Unix seconds), `-Nonce` (single use) and
`-Signature` (base64url), the signature covering these lines joined by `\\n`::

    billfold-device-request-v1
    <device id>
    <METHOD>
    <path as sent, then ? and the query if any>
    <timestamp>
    <nonce>
    <SHA-256 of the exact body bytes, lowercase hex>

A step-up answer signs `billfold-step-up-v1`, the step-up id, the challenge, the amount,
the currency and the payee, one per line. Ed25519 signatures are the raw 64 bytes; P-256
signatures are ECDSA over SHA-256, DER encoded.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Literal

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from billfold.client.types import StepUpChallenge

__all__ = [
    "DEVICE_ID_HEADER",
    "DEVICE_NONCE_HEADER",
    "DEVICE_SIGNATURE_HEADER",
    "DEVICE_TIMESTAMP_HEADER",
    "DeviceSigner",
    "request_message",
    "step_up_message",
]

DEVICE_ID_HEADER = "Billfold-Device-Id"
DEVICE_TIMESTAMP_HEADER = "Billfold-Device-Timestamp"
DEVICE_NONCE_HEADER = "Billfold-Device-Nonce"
DEVICE_SIGNATURE_HEADER = "Billfold-Device-Signature"
_NONCE_BYTES = 18  # 24 base64url characters: within the server's 16 to 64

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def request_message(
    *, device_id: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """The exact bytes a device signs for a request."""
    lines = [
        "billfold-device-request-v1",
        device_id,
        method.upper(),
        target,
        timestamp,
        nonce,
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines).encode()


def step_up_message(
    *, step_up_id: str, challenge: str, amount: int, currency: str, payee: str
) -> bytes:
    """The exact bytes a device signs to answer a step-up."""
    lines = ["billfold-step-up-v1", step_up_id, challenge, str(amount), currency, payee]
    return "\n".join(lines).encode()


class DeviceSigner:
    """A device's private key (Ed25519, or ECDSA on P-256) and, once bound, its id."""

    def __init__(
        self,
        private_key: PrivateKey,
        *,
        device_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey) and not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ValueError("an ECDSA device key must be on P-256 (secp256r1)")
        self.private_key = private_key
        self.device_id = device_id
        self._clock = clock

    @property
    def algorithm(self) -> Literal["ed25519", "p256"]:
        return "ed25519" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "p256"

    def public_key(self) -> str:
        """The public key as the server binds it: DER SubjectPublicKeyInfo, base64url."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _b64url(der)

    def sign(self, message: bytes) -> str:
        """A base64url signature over `message`."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return _b64url(self.private_key.sign(message))
        return _b64url(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))

    def sign_request(self, request: httpx.Request) -> None:
        """Add the four signature headers to `request` (a fresh nonce each time)."""
        if self.device_id is None:
            raise ValueError("bind the device first: its id is part of what it signs")
        timestamp = str(int(self._clock()))
        nonce = secrets.token_urlsafe(_NONCE_BYTES)
        message = request_message(
            device_id=self.device_id,
            method=request.method,
            target=request.url.raw_path.decode("ascii"),
            timestamp=timestamp,
            nonce=nonce,
            body=request.content,
        )
        request.headers[DEVICE_ID_HEADER] = self.device_id
        request.headers[DEVICE_TIMESTAMP_HEADER] = timestamp
        request.headers[DEVICE_NONCE_HEADER] = nonce
        request.headers[DEVICE_SIGNATURE_HEADER] = self.sign(message)

    def sign_step_up(self, challenge: StepUpChallenge) -> str:
        """The signature answering a device step-up, over exactly its action."""
        message = step_up_message(
            step_up_id=challenge["id"],
            challenge=challenge["challenge"],
            amount=challenge["amount"],
            currency=challenge["currency"],
            payee=challenge["payee"],
        )
        return self.sign(message)
