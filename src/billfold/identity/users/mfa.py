"""Second factors: TOTP enrolment, recovery codes, passkeys, and checking an answer.

A user with a confirmed TOTP app or at least one passkey has MFA enrolled: their sign-in
takes two steps (``service.login`` then ``service.complete_mfa``). The first factor a user
enrols also issues ten recovery codes, shown once.

Service functions take keyword arguments, flush and never commit.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import outbox_events
from billfold.identity.security_events import SecurityEventType
from billfold.identity.users.config import UsersConfig
from billfold.identity.users.errors import (
    Aftermath,
    FactorStateConflict,
    InvalidCode,
    PasskeyRejected,
    UserLimitReached,
    UserNotAuthenticated,
    with_aftermath,
)
from billfold.identity.users.events import record_user_event
from billfold.identity.users.models import EndUser, Passkey, TotpFactor, WebAuthnChallenge
from billfold.identity.users.passkeys import (
    CounterRegressed,
    RegisteredCredential,
    authentication_options,
    client_data_challenge,
    credential_raw_id,
    registration_options,
    verify_assertion,
    verify_registration,
)
from billfold.identity.users.reauthentication import reauthenticate
from billfold.identity.users.recovery_codes import (
    hash_recovery_code,
    mint_recovery_codes,
    normalize_recovery_code,
)
from billfold.identity.users.repository import FactorRepository, UserRepository
from billfold.identity.users.totp import matching_step, new_totp_secret, provisioning_uri
from billfold.identity.users.totp_seeds import open_seed, seal_seed
from billfold.identity.users.types import PASSKEY_ID_PREFIX, UserPrincipal
from billfold.keys.keyring import Keyring
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id

__all__ = [
    "PASSKEYS_PER_USER_MAX",
    "WEBAUTHN_CHALLENGE_LIFETIME_NS",
    "FactorCheck",
    "PasskeyAnswer",
    "RecoveryCodeAnswer",
    "RegisteredPasskey",
    "SecondFactorAnswer",
    "TotpAnswer",
    "TotpEnrolment",
    "begin_totp_enrolment",
    "check_second_factor",
    "close_challenge_aftermath",
    "confirm_totp_enrolment",
    "enrolled_methods",
    "list_passkeys",
    "method_of",
    "passkey_authentication_options",
    "passkey_registration_options",
    "regenerate_recovery_codes",
    "register_passkey",
    "user_name_of",
    "verify_totp",
]

PASSKEYS_PER_USER_MAX = 10
WEBAUTHN_CHALLENGE_LIFETIME_NS = 180 * NANOSECONDS_PER_SECOND
"""The browser's timeout (120 s) plus time for the answer to arrive."""
_CHALLENGE_BYTES = 32


@dataclass(frozen=True, slots=True)
class TotpAnswer:
    code: str


@dataclass(frozen=True, slots=True)
class RecoveryCodeAnswer:
    code: str


@dataclass(frozen=True, slots=True)
class PasskeyAnswer:
    credential: Mapping[str, Any]
    """The JSON of ``navigator.credentials.get()``'s result."""


SecondFactorAnswer = TotpAnswer | RecoveryCodeAnswer | PasskeyAnswer


class FactorCheck(enum.Enum):
    """What checking a second-factor answer found."""

    PROVED = "proved"
    WRONG = "wrong"
    """Not a right answer (the failure's reason is ``wrong_<method>``)."""
    PASSKEY_COUNTER_REGRESSED = "passkey_counter_regressed"
    """A validly signed passkey assertion whose signature counter did not grow: WebAuthn's
    signal of a possibly cloned authenticator. Refused, with a reason of its own."""


def method_of(answer: SecondFactorAnswer) -> str:
    """The method's name, as sessions and security events record it."""
    if isinstance(answer, TotpAnswer):
        return "totp"
    if isinstance(answer, RecoveryCodeAnswer):
        return "recovery_code"
    return "passkey"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """The seed, shown once, and the URI an authenticator app scans."""

    secret: str
    provisioning_uri: str


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    passkey: Passkey
    recovery_codes: list[str] | None
    """Issued with the user's first factor only; None otherwise."""


def user_name_of(user: EndUser) -> str:
    """What an authenticator shows the account as: the user's first identifier."""
    return user.email or user.phone or user.handle or format_id("usr", user.id)


async def _user(session: AsyncSession, principal: UserPrincipal) -> EndUser:
    user = await UserRepository(session).get(principal.user_id)
    if user is None:
        raise UserNotAuthenticated()
    return user


async def enrolled_methods(session: AsyncSession, *, user_id: uuid.UUID) -> list[str]:
    """The second factors the user can answer with; empty when MFA is not enrolled."""
    factors = FactorRepository(session)
    totp = await factors.get_totp(user_id)
    methods = ["totp"] if totp is not None and totp.confirmed_at is not None else []
    if await factors.count_passkeys(user_id) > 0:
        methods.append("passkey")
    if methods and await factors.count_unused_recovery_codes(user_id) > 0:
        methods.append("recovery_code")
    return methods


async def _issue_recovery_codes(session: AsyncSession, *, user: EndUser, now_ns: int) -> list[str]:
    codes = mint_recovery_codes()
    hashes = []
    for code in codes:
        normalized = normalize_recovery_code(code)
        invariant(normalized is not None, "a minted recovery code reads back")
        hashes.append(hash_recovery_code(user_id=user.id, normalized=str(normalized)))
    await FactorRepository(session).replace_recovery_codes(
        user_id=user.id, code_hashes=hashes, now_ns=now_ns
    )
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.MFA_ENROLLED,
        now_ns=now_ns,
        detail={"factor": "recovery_codes", "count": len(codes)},
    )
    outbox_events.mfa_enrolled(session, user=user, factor="recovery_codes", now_ns=now_ns)
    return codes


async def _first_factor_codes(
    session: AsyncSession, *, user: EndUser, now_ns: int
) -> list[str] | None:
    """Recovery codes when the user holds none unused (their first factor), else None."""
    if await FactorRepository(session).count_unused_recovery_codes(user.id) > 0:
        return None
    return await _issue_recovery_codes(session, user=user, now_ns=now_ns)


async def begin_totp_enrolment(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    config: UsersConfig,
    keyring: Keyring,
    now_ns: int,
) -> TotpEnrolment:
    """A fresh seed, pending until a code from it is confirmed; replaces a pending one."""
    user = await _user(session, principal)
    factors = FactorRepository(session)
    existing = await factors.get_totp(user.id)
    if existing is not None and existing.confirmed_at is not None:
        raise FactorStateConflict("TOTP is already enabled for this user.")
    secret = new_totp_secret()
    if existing is None:
        factor = TotpFactor(
            user_id=user.id, secret=None, created_at=now_ns, confirmed_at=None, last_used_step=None
        )
        await seal_seed(
            session, keyring, factor, tenant_id=user.tenant_id, secret=secret, now_ns=now_ns
        )
        await factors.add(factor)
    else:  # a pending seed the user never confirmed: start over with a new one
        await seal_seed(
            session, keyring, existing, tenant_id=user.tenant_id, secret=secret, now_ns=now_ns
        )
        existing.created_at = now_ns
        await session.flush()
    uri = provisioning_uri(secret, account=user_name_of(user), issuer=config.totp_issuer)
    return TotpEnrolment(secret=secret, provisioning_uri=uri)


async def confirm_totp_enrolment(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    code: str,
    password: str,
    config: UsersConfig,
    keyring: Keyring,
    now_ns: int,
) -> list[str] | None:
    """Enable the pending TOTP seed if ``code`` comes from it; the recovery codes if this
    is the user's first factor. The password is asked again (see ``reauthentication``)."""
    user = await reauthenticate(
        session, principal=principal, password=password, config=config, now_ns=now_ns
    )
    factor = await FactorRepository(session).get_totp(user.id)
    if factor is None or factor.confirmed_at is not None:
        raise FactorStateConflict("No TOTP enrolment is pending; start one first.")
    secret = await open_seed(session, keyring, factor, tenant_id=user.tenant_id, now_ns=now_ns)
    step = None
    if secret is not None:
        step = matching_step(
            secret, code=code, at_s=now_ns // NANOSECONDS_PER_SECOND, after_step=None
        )
    if step is None:
        raise InvalidCode("The code does not match; check the authenticator app's clock.")
    factor.confirmed_at = now_ns
    factor.last_used_step = step  # the confirming code cannot be replayed at sign-in
    await session.flush()
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.MFA_ENROLLED,
        now_ns=now_ns,
        detail={"factor": "totp"},
    )
    outbox_events.mfa_enrolled(session, user=user, factor="totp", now_ns=now_ns)
    return await _first_factor_codes(session, user=user, now_ns=now_ns)


async def regenerate_recovery_codes(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> list[str]:
    """A new set of ten codes, replacing every old one; the password is asked again so a
    stolen access token alone cannot mint them."""
    user = await reauthenticate(
        session, principal=principal, password=password, config=config, now_ns=now_ns
    )
    if not await enrolled_methods(session, user_id=user.id):
        raise FactorStateConflict("Recovery codes back up a second factor; enrol one first.")
    return await _issue_recovery_codes(session, user=user, now_ns=now_ns)


async def _new_challenge(
    session: AsyncSession, *, user_id: uuid.UUID, purpose: str, now_ns: int
) -> bytes:
    challenge = secrets.token_bytes(_CHALLENGE_BYTES)
    await FactorRepository(session).replace_challenge(
        WebAuthnChallenge(
            id=new_id(),
            user_id=user_id,
            purpose=purpose,
            challenge=challenge,
            created_at=now_ns,
            expires_at=now_ns + WEBAUTHN_CHALLENGE_LIFETIME_NS,
            consumed_at=None,
        )
    )
    return challenge


def close_challenge_aftermath(*, user_id: uuid.UUID, purpose: str, now_ns: int) -> Aftermath:
    """Close the user's open WebAuthn challenge of ``purpose`` after a failed ceremony.

    The check that spends a challenge runs in the request's unit of work, which rolls back
    when the ceremony fails, and would leave the challenge open for another try; a
    challenge is single-use whatever the outcome (WebAuthn Level 3, section 13.4.3)."""

    async def close(session: AsyncSession) -> None:
        await FactorRepository(session).close_challenge(
            user_id=user_id, purpose=purpose, now_ns=now_ns
        )

    return close


async def passkey_registration_options(
    session: AsyncSession, *, principal: UserPrincipal, config: UsersConfig, now_ns: int
) -> dict[str, Any]:
    """Options for ``navigator.credentials.create()``, with a stored single-use challenge."""
    user = await _user(session, principal)
    existing = await FactorRepository(session).list_passkeys(
        user_id=user.id, limit=PASSKEYS_PER_USER_MAX
    )
    if len(existing) >= PASSKEYS_PER_USER_MAX:
        raise UserLimitReached(
            f"A user holds at most {PASSKEYS_PER_USER_MAX} passkeys.", limit=PASSKEYS_PER_USER_MAX
        )
    challenge = await _new_challenge(
        session, user_id=user.id, purpose="registration", now_ns=now_ns
    )
    return registration_options(
        relying_party=config.relying_party,
        user_handle=user.id.bytes,  # random, so the authenticator learns nothing personal
        user_name=user_name_of(user),
        challenge=challenge,
        exclude_credential_ids=[passkey.credential_id for passkey in existing],
    )


async def register_passkey(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    name: str,
    credential: Mapping[str, Any],
    password: str,
    config: UsersConfig,
    now_ns: int,
) -> RegisteredPasskey:
    """Verify a registration against the user's open challenge and store the passkey. The
    password is asked again (see ``reauthentication``)."""
    user = await reauthenticate(
        session, principal=principal, password=password, config=config, now_ns=now_ns
    )
    factors = FactorRepository(session)
    if await factors.count_passkeys(user.id) >= PASSKEYS_PER_USER_MAX:
        raise UserLimitReached(
            f"A user holds at most {PASSKEYS_PER_USER_MAX} passkeys.", limit=PASSKEYS_PER_USER_MAX
        )
    try:
        registered = await _verified_registration(
            factors, user_id=user.id, credential=credential, config=config, now_ns=now_ns
        )
    except PasskeyRejected as rejected:
        with_aftermath(
            rejected,
            close_challenge_aftermath(user_id=user.id, purpose="registration", now_ns=now_ns),
        )
        raise
    passkey = Passkey(
        id=new_id(),
        user_id=user.id,
        name=name,
        credential_id=registered.credential_id,
        public_key=registered.public_key,
        sign_count=registered.sign_count,
        aaguid=registered.aaguid,
        created_at=now_ns,
        last_used_at=None,
    )
    await factors.add(passkey)
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.PASSKEY_REGISTERED,
        now_ns=now_ns,
        detail={"passkey_id": format_id(PASSKEY_ID_PREFIX, passkey.id), "aaguid": passkey.aaguid},
    )
    codes = await _first_factor_codes(session, user=user, now_ns=now_ns)
    return RegisteredPasskey(passkey=passkey, recovery_codes=codes)


async def _verified_registration(
    factors: FactorRepository,
    *,
    user_id: uuid.UUID,
    credential: Mapping[str, Any],
    config: UsersConfig,
    now_ns: int,
) -> RegisteredCredential:
    """The new credential, verified against the user's open registration challenge (which
    this spends), or :class:`PasskeyRejected`."""
    challenge = client_data_challenge(credential)
    if challenge is None or not await factors.consume_challenge(
        user_id=user_id, purpose="registration", challenge=challenge, now_ns=now_ns
    ):
        raise PasskeyRejected("No open registration challenge matches; request new options.")
    registered = verify_registration(
        relying_party=config.relying_party, credential=credential, challenge=challenge
    )
    if await factors.credential_id_exists(registered.credential_id):
        raise PasskeyRejected("This passkey is already registered.")
    return registered


async def list_passkeys(session: AsyncSession, *, principal: UserPrincipal) -> list[Passkey]:
    return await FactorRepository(session).list_passkeys(
        user_id=principal.user_id, limit=PASSKEYS_PER_USER_MAX
    )


async def passkey_authentication_options(
    session: AsyncSession, *, user_id: uuid.UUID, config: UsersConfig, now_ns: int
) -> dict[str, Any]:
    """Options for ``navigator.credentials.get()`` over the user's passkeys."""
    passkeys = await FactorRepository(session).list_passkeys(
        user_id=user_id, limit=PASSKEYS_PER_USER_MAX
    )
    challenge = await _new_challenge(
        session, user_id=user_id, purpose="authentication", now_ns=now_ns
    )
    return authentication_options(
        relying_party=config.relying_party,
        challenge=challenge,
        allow_credential_ids=[passkey.credential_id for passkey in passkeys],
    )


async def verify_totp(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    code: str,
    keyring: Keyring,
    now_ns: int,
) -> bool:
    """Whether ``code`` is a fresh code of the user's confirmed TOTP app; a success spends
    the code's time step, so the same code (or an older one) never works twice. A seed
    that does not decrypt for this user's row matches no code."""
    factors = FactorRepository(session)
    factor = await factors.get_totp(user_id)
    if factor is None or factor.confirmed_at is None:
        return False
    secret = await open_seed(session, keyring, factor, tenant_id=tenant_id, now_ns=now_ns)
    if secret is None:
        return False
    step = matching_step(
        secret,
        code=code,
        at_s=now_ns // NANOSECONDS_PER_SECOND,
        after_step=factor.last_used_step,
    )
    return step is not None and await factors.accept_totp_step(user_id=user_id, step=step)


async def _verify_recovery_code(
    session: AsyncSession, *, user: EndUser, code: str, now_ns: int
) -> bool:
    normalized = normalize_recovery_code(code)
    if normalized is None:
        return False
    factors = FactorRepository(session)
    code_hash = hash_recovery_code(user_id=user.id, normalized=normalized)
    if not await factors.spend_recovery_code(user_id=user.id, code_hash=code_hash, now_ns=now_ns):
        return False
    await record_user_event(
        session,
        tenant_id=user.tenant_id,
        user_id=user.id,
        event_type=SecurityEventType.RECOVERY_CODE_USED,
        now_ns=now_ns,
        detail={"remaining": await factors.count_unused_recovery_codes(user.id)},
    )
    return True


async def _verify_passkey(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    credential: Mapping[str, Any],
    config: UsersConfig,
    now_ns: int,
) -> FactorCheck:
    challenge, raw_id = client_data_challenge(credential), credential_raw_id(credential)
    if challenge is None or raw_id is None:
        return FactorCheck.WRONG
    factors = FactorRepository(session)
    passkey = await factors.find_passkey(user_id=user_id, credential_id=raw_id)
    if passkey is None or not await factors.consume_challenge(
        user_id=user_id, purpose="authentication", challenge=challenge, now_ns=now_ns
    ):
        return FactorCheck.WRONG
    new_count = verify_assertion(
        relying_party=config.relying_party,
        credential=credential,
        challenge=challenge,
        public_key=passkey.public_key,
        sign_count=passkey.sign_count,
    )
    if isinstance(new_count, CounterRegressed):
        return FactorCheck.PASSKEY_COUNTER_REGRESSED
    advanced = new_count is not None and await factors.advance_sign_count(
        passkey_id=passkey.id, seen=passkey.sign_count, new=new_count, now_ns=now_ns
    )
    return FactorCheck.PROVED if advanced else FactorCheck.WRONG


async def check_second_factor(
    session: AsyncSession,
    *,
    user: EndUser,
    answer: SecondFactorAnswer,
    config: UsersConfig,
    keyring: Keyring,
    now_ns: int,
) -> FactorCheck:
    """Whether ``answer`` proves the user's second factor (and spends what it used)."""
    if isinstance(answer, PasskeyAnswer):
        return await _verify_passkey(
            session, user_id=user.id, credential=answer.credential, config=config, now_ns=now_ns
        )
    if isinstance(answer, TotpAnswer):
        proved = await verify_totp(
            session,
            user_id=user.id,
            tenant_id=user.tenant_id,
            code=answer.code,
            keyring=keyring,
            now_ns=now_ns,
        )
    else:
        proved = await _verify_recovery_code(session, user=user, code=answer.code, now_ns=now_ns)
    return FactorCheck.PROVED if proved else FactorCheck.WRONG
