"""Device keys and what they sign. Pure functions, no I/O.

A device binds a public key once (DER SubjectPublicKeyInfo, Ed25519 or P-256) and then
signs with the private key, which never leaves it.

**A signed request** carries four headers::

    Billfold-Device-Id:         dev_<32 hex>
    Billfold-Device-Timestamp:  <Unix time in whole seconds, decimal>
    Billfold-Device-Nonce:      <16 to 64 characters of A-Z a-z 0-9 _ ->
    Billfold-Device-Signature:  <base64url signature, padding optional>

and the signature covers exactly these lines, UTF-8, joined by a single ``\\n`` (no
trailing newline)::

    billfold-device-request-v1
    <device id, as in the header>
    <HTTP method, uppercase>
    <path, as sent, percent-encoded; then `?` and the query string if there is one>
    <timestamp, as in the header>
    <nonce, as in the header>
    <SHA-256 of the exact body bytes, lowercase hex (of the empty string if no body)>

**A step-up answer** signs, the same way::

    billfold-step-up-v1
    <step-up id, stp_<32 hex>>
    <challenge, as issued>
    <amount, decimal integer in minor units>
    <currency>
    <payee>

so the signature itself names the amount and the payee (PSD2 dynamic linking).

Ed25519 signatures are the raw 64 bytes. P-256 signatures are ECDSA over SHA-256, either
DER encoded (what Android Keystore and the iOS Secure Enclave produce) or as r || s, two
32-byte big-endian integers (IEEE P1363: what WebCrypto, JOSE ES256 and RFC 9421's
``ecdsa-p256-sha256`` produce).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from billfold.identity.users.errors import InvalidDeviceKey
from billfold.identity.users.models import DEVICE_PUBLIC_KEY_BYTES_MAX, NONCE_LENGTH_MAX

__all__ = [
    "DEVICE_ID_HEADER",
    "DEVICE_NONCE_HEADER",
    "DEVICE_SIGNATURE_HEADER",
    "DEVICE_TIMESTAMP_HEADER",
    "NONCE_LENGTH_MIN",
    "SIGNATURE_LENGTH_MAX",
    "DeviceAlgorithm",
    "check_device_public_key",
    "decode_signature",
    "is_valid_nonce",
    "request_message",
    "signature_verifies",
    "step_up_message",
]

DEVICE_ID_HEADER = "Billfold-Device-Id"
DEVICE_TIMESTAMP_HEADER = "Billfold-Device-Timestamp"
DEVICE_NONCE_HEADER = "Billfold-Device-Nonce"
DEVICE_SIGNATURE_HEADER = "Billfold-Device-Signature"
NONCE_LENGTH_MIN = 16
"""At least 96 bits when random base64url, so honest devices never collide."""
SIGNATURE_LENGTH_MAX = 200
"""Base64url characters: a DER P-256 signature is at most 72 bytes, Ed25519 64."""
_NONCE = re.compile(rf"[A-Za-z0-9_-]{{{NONCE_LENGTH_MIN},{NONCE_LENGTH_MAX}}}", re.ASCII)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}", re.ASCII)
_P256_FIXED_WIDTH_BYTES = 64
"""r || s, 32 bytes each: the P1363 form of a P-256 signature."""


class DeviceAlgorithm(StrEnum):
    ED25519 = "ed25519"
    P256 = "p256"


def check_device_public_key(*, algorithm: DeviceAlgorithm, public_key_der: bytes) -> None:
    """Refuse anything but a well-formed key of ``algorithm`` (P-256 for p256)."""
    if not 0 < len(public_key_der) <= DEVICE_PUBLIC_KEY_BYTES_MAX:
        raise InvalidDeviceKey(f"A device public key is 1 to {DEVICE_PUBLIC_KEY_BYTES_MAX} bytes.")
    try:
        key = load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise InvalidDeviceKey("The public key is not a DER SubjectPublicKeyInfo.") from error
    if algorithm is DeviceAlgorithm.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
        return
    if (
        algorithm is DeviceAlgorithm.P256
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        return
    raise InvalidDeviceKey(f"The public key is not an {algorithm.value} key.")


def signature_verifies(
    *, algorithm: DeviceAlgorithm, public_key_der: bytes, message: bytes, signature: bytes
) -> bool:
    """Whether ``signature`` by the bound key covers ``message``."""
    key = load_der_public_key(public_key_der)
    try:
        if algorithm is DeviceAlgorithm.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if algorithm is DeviceAlgorithm.P256 and isinstance(key, ec.EllipticCurvePublicKey):
            return any(
                _p256_verifies(key, message=message, der=der) for der in _p256_der_forms(signature)
            )
    except InvalidSignature:
        return False
    return False


def _p256_der_forms(signature: bytes) -> list[bytes]:
    """The DER encodings ``signature`` may stand for: itself, and for 64 bytes also r || s
    (a 64-byte DER signature is possible, so both are tried)."""
    forms = [signature]
    if len(signature) == _P256_FIXED_WIDTH_BYTES:
        half = _P256_FIXED_WIDTH_BYTES // 2
        r, s = (int.from_bytes(part, "big") for part in (signature[:half], signature[half:]))
        forms.append(encode_dss_signature(r, s))
    return forms


def _p256_verifies(key: ec.EllipticCurvePublicKey, *, message: bytes, der: bytes) -> bool:
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def decode_signature(text: str) -> bytes | None:
    """The signature bytes of a base64url header value, or None if malformed."""
    if not 0 < len(text) <= SIGNATURE_LENGTH_MAX or not _BASE64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        return None


def is_valid_nonce(text: str) -> bool:
    return _NONCE.fullmatch(text) is not None


def request_message(
    *, device_id: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """The exact bytes a device signs for a request (see the module docstring)."""
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
    """The exact bytes a device signs to answer a step-up (see the module docstring)."""
    lines = ["billfold-step-up-v1", step_up_id, challenge, str(amount), currency, payee]
    return "\n".join(lines).encode()
