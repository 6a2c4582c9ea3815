"""Bound devices: a user registers a device public key, the device signs requests with it.

What a device signs, and in which headers, is defined in ``signatures``. A signed request
is accepted when its timestamp is within DEVICE_CLOCK_SKEW_S of the server's clock, the
device is the user's and not revoked, the signature verifies, and the nonce was not used
by the device before. Nonces are kept in the database (so every API node sees them) until
the timestamp check alone would refuse their request.

Service functions take keyword arguments, flush and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import outbox_events
from billfold.identity.security_events import SecurityEventType
from billfold.identity.users.config import UsersConfig
from billfold.identity.users.errors import (
    Aftermath,
    DeviceNotFound,
    DeviceSignatureInvalid,
    UserLimitReached,
    UserNotAuthenticated,
    with_aftermath,
)
from billfold.identity.users.events import record_user_event
from billfold.identity.users.models import Device
from billfold.identity.users.reauthentication import reauthenticate
from billfold.identity.users.repository import DeviceRepository, UserRepository
from billfold.identity.users.signatures import (
    DeviceAlgorithm,
    check_device_public_key,
    decode_signature,
    is_valid_nonce,
    request_message,
    signature_verifies,
)
from billfold.identity.users.types import DEVICE_ID_PREFIX, UserPrincipal
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import BadRequest
from billfold.kit.ids import format_id, new_id, parse_id

__all__ = [
    "DEVICES_PER_USER_MAX",
    "DEVICE_CLOCK_SKEW_S",
    "SIGNED_BODY_BYTES_MAX",
    "SignedRequest",
    "bind_device",
    "list_devices",
    "revoke_device",
    "verify_signed_request",
]

DEVICES_PER_USER_MAX = 10
"""Unrevoked devices a user holds at once."""
DEVICE_CLOCK_SKEW_S = 120
"""How far a signed request's timestamp may be from the server's clock, either way."""
SIGNED_BODY_BYTES_MAX = 1024 * 1024
"""Largest body a signature is checked over (the application's own limit is usually lower)."""
_TIMESTAMP_DIGITS_MAX = 12


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request as the device claims to have signed it: headers as sent, the method, the
    target (path and query, as sent) and the exact body."""

    device_id: str
    timestamp: str
    nonce: str
    signature: str
    method: str
    target: str
    body: bytes


async def bind_device(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    name: str,
    algorithm: DeviceAlgorithm,
    public_key_der: bytes,
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> Device:
    """Register a device public key for the user. A bound device answers step-ups, so the
    password is asked again (see ``reauthentication``)."""
    await reauthenticate(
        session, principal=principal, password=password, config=config, now_ns=now_ns
    )
    check_device_public_key(algorithm=algorithm, public_key_der=public_key_der)
    devices = DeviceRepository(session)
    if await devices.count_active(principal.user_id) >= DEVICES_PER_USER_MAX:
        raise UserLimitReached(
            f"A user holds at most {DEVICES_PER_USER_MAX} devices; revoke one first.",
            limit=DEVICES_PER_USER_MAX,
        )
    device = Device(
        id=new_id(),
        user_id=principal.user_id,
        name=name,
        algorithm=algorithm.value,
        public_key=public_key_der,
        created_at=now_ns,
        last_used_at=None,
        revoked_at=None,
    )
    await devices.add(device)
    await record_user_event(
        session,
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        event_type=SecurityEventType.DEVICE_BOUND,
        now_ns=now_ns,
        detail={"device_id": format_id(DEVICE_ID_PREFIX, device.id), "algorithm": algorithm.value},
    )
    outbox_events.device_bound(
        session,
        tenant_id=principal.tenant_id,
        mode=principal.mode,
        user_id=principal.user_id,
        device_id=format_id(DEVICE_ID_PREFIX, device.id),
        algorithm=algorithm.value,
        now_ns=now_ns,
    )
    return device


async def list_devices(session: AsyncSession, *, principal: UserPrincipal) -> list[Device]:
    """The user's unrevoked devices, oldest first."""
    return await DeviceRepository(session).list_active(
        user_id=principal.user_id, limit=DEVICES_PER_USER_MAX
    )


async def revoke_device(
    session: AsyncSession, *, principal: UserPrincipal, device_id: uuid.UUID, now_ns: int
) -> Device:
    """Revoke one of the user's devices; revoking it again changes nothing."""
    device = await DeviceRepository(session).get_for_user(
        user_id=principal.user_id, device_id=device_id
    )
    if device is None:
        raise DeviceNotFound()
    if device.revoked_at is None:
        device.revoked_at = now_ns
        await session.flush()
        await record_user_event(
            session,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            event_type=SecurityEventType.DEVICE_REVOKED,
            now_ns=now_ns,
            detail={"device_id": format_id(DEVICE_ID_PREFIX, device.id)},
        )
        outbox_events.device_revoked(
            session,
            tenant_id=principal.tenant_id,
            mode=principal.mode,
            user_id=principal.user_id,
            device_id=format_id(DEVICE_ID_PREFIX, device.id),
            now_ns=now_ns,
        )
    return device


def _invalid(reason: str, message: str, **extensions: int) -> DeviceSignatureInvalid:
    error = DeviceSignatureInvalid(message, **extensions)
    error.reason = reason
    return error


def _timestamp_s(text: str, *, now_ns: int) -> int:
    if not 0 < len(text) <= _TIMESTAMP_DIGITS_MAX or not text.isascii() or not text.isdigit():
        raise DeviceSignatureInvalid("The timestamp is Unix time in whole seconds.")
    timestamp_s = int(text)
    if abs(now_ns // NANOSECONDS_PER_SECOND - timestamp_s) > DEVICE_CLOCK_SKEW_S:
        raise _invalid(
            "stale_timestamp",
            f"The timestamp is more than {DEVICE_CLOCK_SKEW_S} s from the server's clock.",
            clock_skew_max_s=DEVICE_CLOCK_SKEW_S,
        )
    return timestamp_s


def _device_id(text: str) -> uuid.UUID:
    try:
        return parse_id(DEVICE_ID_PREFIX, text)
    except BadRequest as error:
        raise DeviceSignatureInvalid("The device id is malformed.") from error


async def verify_signed_request(
    session: AsyncSession, *, user_id: uuid.UUID, signed: SignedRequest, now_ns: int
) -> Device:
    """The user's device that signed ``signed``, or :class:`DeviceSignatureInvalid`. A
    success spends the nonce. A refusal carries, as its aftermath, a
    ``device_signature.failed`` security event saying why (run this through
    ``work.run_recording_failures``): an access token that is valid with a signature that
    is not is what a stolen token looks like."""
    users = UserRepository(session)
    user = await users.get(user_id)
    if user is None or not await users.is_signable(user_id):
        raise UserNotAuthenticated()
    try:
        return await _verified_device(session, user_id=user_id, signed=signed, now_ns=now_ns)
    except DeviceSignatureInvalid as error:
        with_aftermath(
            error,
            _failure_aftermath(
                tenant_id=user.tenant_id,
                user_id=user_id,
                device_id=signed.device_id,
                reason=error.reason,
                now_ns=now_ns,
            ),
        )
        raise


def _failure_aftermath(
    *, tenant_id: uuid.UUID, user_id: uuid.UUID, device_id: str, reason: str, now_ns: int
) -> Aftermath:
    try:
        named = format_id(DEVICE_ID_PREFIX, parse_id(DEVICE_ID_PREFIX, device_id))
    except BadRequest:
        named = None  # not a device id: not worth keeping

    async def record(session: AsyncSession) -> None:
        await record_user_event(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            event_type=SecurityEventType.DEVICE_SIGNATURE_FAILED,
            now_ns=now_ns,
            actor_unproven=True,
            detail={"device_id": named, "reason": reason},
        )

    return record


async def _verified_device(
    session: AsyncSession, *, user_id: uuid.UUID, signed: SignedRequest, now_ns: int
) -> Device:
    timestamp_s = _timestamp_s(signed.timestamp, now_ns=now_ns)
    signature = decode_signature(signed.signature)
    if not is_valid_nonce(signed.nonce) or signature is None:
        raise DeviceSignatureInvalid("The nonce or the signature is malformed.")
    if len(signed.body) > SIGNED_BODY_BYTES_MAX:
        raise DeviceSignatureInvalid(f"Signed bodies are at most {SIGNED_BODY_BYTES_MAX} bytes.")
    devices = DeviceRepository(session)
    device = await devices.get_for_user(user_id=user_id, device_id=_device_id(signed.device_id))
    message = request_message(
        device_id=signed.device_id,
        method=signed.method,
        target=signed.target,
        timestamp=signed.timestamp,
        nonce=signed.nonce,
        body=signed.body,
    )
    if device is None or device.revoked_at is not None:
        raise _invalid("inactive_device", "The signature does not verify for an active device.")
    if not signature_verifies(
        algorithm=DeviceAlgorithm(device.algorithm),
        public_key_der=device.public_key,
        message=message,
        signature=signature,
    ):
        raise _invalid("bad_signature", "The signature does not verify for an active device.")
    # Checked after the signature, so nobody but the device can burn its nonces.
    nonce_expires_at = (timestamp_s + DEVICE_CLOCK_SKEW_S + 1) * NANOSECONDS_PER_SECOND
    if not await devices.use_nonce(
        device_id=device.id, nonce=signed.nonce, expires_at=nonce_expires_at, now_ns=now_ns
    ):
        raise _invalid("replayed_nonce", "The nonce was already used: a replayed request.")
    await devices.touch(device_id=device.id, now_ns=now_ns)
    return device
