"""WebAuthn passkeys over py_webauthn: options and verification. Pure functions, no I/O.

The server generates every challenge and stores it (``models.WebAuthnChallenge``); these
functions build the options a browser passes to ``navigator.credentials.create()`` or
``.get()``, and verify what comes back: the challenge, the origin, the relying party id
hash, user presence, the attestation (``none`` and the formats py_webauthn verifies) and,
for an assertion, the signature and the signature counter.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    options_to_json_dict,
    parse_client_data_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from billfold.identity.users.errors import PasskeyRejected
from billfold.identity.users.models import CREDENTIAL_ID_BYTES_MAX, PASSKEY_PUBLIC_KEY_BYTES_MAX

__all__ = [
    "PASSKEY_TIMEOUT_MS",
    "SUPPORTED_ALGORITHMS",
    "CounterRegressed",
    "RegisteredCredential",
    "RelyingParty",
    "authentication_options",
    "client_data_challenge",
    "credential_raw_id",
    "registration_options",
    "verify_assertion",
    "verify_registration",
]

PASSKEY_TIMEOUT_MS = 120_000
"""How long the browser lets the user answer; the stored challenge lives a little longer."""
SUPPORTED_ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
# A malformed credential can make the parsers fail in more ways than WebAuthnException
# (bad base64, bad CBOR, missing keys); all of them mean the same: rejected.
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, binascii.Error)


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the passkeys are for: the domain (RP id) and the exact origins allowed."""

    id: str
    name: str
    origins: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.id or not self.name or not self.origins:
            raise ValueError("a relying party needs an id, a name and at least one origin")


@dataclass(frozen=True, slots=True)
class RegisteredCredential:
    """What a verified registration yields, to be stored as a ``Passkey``."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str


def registration_options(
    *,
    relying_party: RelyingParty,
    user_handle: bytes,
    user_name: str,
    challenge: bytes,
    exclude_credential_ids: Sequence[bytes],
) -> dict[str, Any]:
    """The JSON options for ``navigator.credentials.create()``."""
    options = generate_registration_options(
        rp_id=relying_party.id,
        rp_name=relying_party.name,
        user_id=user_handle,
        user_name=user_name,
        challenge=challenge,
        timeout=PASSKEY_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=i) for i in exclude_credential_ids],
        supported_pub_key_algs=SUPPORTED_ALGORITHMS,
    )
    return dict(options_to_json_dict(options))


def authentication_options(
    *, relying_party: RelyingParty, challenge: bytes, allow_credential_ids: Sequence[bytes]
) -> dict[str, Any]:
    """The JSON options for ``navigator.credentials.get()``, limited to the user's passkeys."""
    options = generate_authentication_options(
        rp_id=relying_party.id,
        challenge=challenge,
        timeout=PASSKEY_TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=i) for i in allow_credential_ids],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return dict(options_to_json_dict(options))


def client_data_challenge(credential: Mapping[str, Any]) -> bytes | None:
    """The challenge a credential's client data claims to answer (unverified: it only
    finds the stored challenge, which verification then checks), or None if malformed."""
    try:
        response = credential["response"]
        client_data = parse_client_data_json(base64url_to_bytes(response["clientDataJSON"]))
    except _MALFORMED:
        return None
    return bytes(client_data.challenge)


def credential_raw_id(credential: Mapping[str, Any]) -> bytes | None:
    """The credential id a response names, or None if malformed or too long."""
    raw_id = credential.get("rawId")
    if not isinstance(raw_id, str):
        return None
    try:
        decoded = base64url_to_bytes(raw_id)
    except _MALFORMED:
        return None
    return decoded if 0 < len(decoded) <= CREDENTIAL_ID_BYTES_MAX else None


def verify_registration(
    *, relying_party: RelyingParty, credential: Mapping[str, Any], challenge: bytes
) -> RegisteredCredential:
    """The new credential, or :class:`PasskeyRejected` for anything that does not verify."""
    try:
        verified = verify_registration_response(
            credential=json.loads(json.dumps(credential)),  # py_webauthn wants a plain dict
            expected_challenge=challenge,
            expected_rp_id=relying_party.id,
            expected_origin=list(relying_party.origins),
            supported_pub_key_algs=SUPPORTED_ALGORITHMS,
        )
    except _MALFORMED as error:
        raise PasskeyRejected("The passkey registration does not verify.") from error
    if (
        not 0 < len(verified.credential_id) <= CREDENTIAL_ID_BYTES_MAX
        or len(verified.credential_public_key) > PASSKEY_PUBLIC_KEY_BYTES_MAX
    ):
        raise PasskeyRejected("The passkey's credential id or public key is too long.")
    return RegisteredCredential(
        credential_id=bytes(verified.credential_id),
        public_key=bytes(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
    )


@dataclass(frozen=True, slots=True)
class CounterRegressed:
    """A validly signed assertion whose signature counter did not grow past the stored one."""

    presented: int
    stored: int


def verify_assertion(
    *,
    relying_party: RelyingParty,
    credential: Mapping[str, Any],
    challenge: bytes,
    public_key: bytes,
    sign_count: int,
) -> int | CounterRegressed | None:
    """The authenticator's new signature counter if the assertion verifies, None if it does
    not, or :class:`CounterRegressed` if it is validly signed but its counter did not grow
    past ``sign_count`` (both 0 is fine: synced passkeys keep no counter).

    WebAuthn (§7.2, the signature counter step) calls such an assertion a signal that the
    authenticator may have been cloned, and leaves refusing it to the relying party: it is
    refused, but told apart from a bad signature, which a security team reads differently.
    py_webauthn's own check is bypassed (a counter of 0) so that only the signature decides
    whether the assertion verifies, and the counter is compared here.
    """
    try:
        verified = verify_authentication_response(
            credential=json.loads(json.dumps(credential)),
            expected_challenge=challenge,
            expected_rp_id=relying_party.id,
            expected_origin=list(relying_party.origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,
        )
    except _MALFORMED:
        return None
    presented = verified.new_sign_count
    if presented <= sign_count and (presented > 0 or sign_count > 0):
        return CounterRegressed(presented=presented, stored=sign_count)
    return presented
