"""Every query end users need. Repositories add and flush; the unit of work commits.

Reads a tenant's caller can reach are filtered by tenant and mode (users) or by the user
(everything a user owns), so a route cannot forget the filter. Updates that decide a race
(spending a refresh token, a recovery code, a TOTP step, a challenge, a nonce, a step-up
token) carry their condition in the UPDATE or INSERT itself: of two concurrent requests,
exactly one changes the row, and the other sees that it did not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.models import Tenant
from billfold.identity.types import Mode, TenantStatus
from billfold.identity.users.identifiers import Identifier, IdentifierKind
from billfold.identity.users.models import (
    Device,
    DeviceNonce,
    EndUser,
    MfaTicket,
    Passkey,
    RecoveryCode,
    StepUp,
    TotpFactor,
    UserSession,
    UserToken,
    WebAuthnChallenge,
)
from billfold.kit.errors import invariant
from billfold.kit.ids import new_id

__all__ = [
    "AccessTokenRow",
    "DeviceRepository",
    "FactorRepository",
    "RefreshTokenRow",
    "SessionRepository",
    "StepUpRepository",
    "UserRepository",
]

_ACTIVE = "active"
_REUSED = "refresh_token_reused"


def _rowcount(result: Any) -> int:
    # UPDATE, DELETE and INSERT return a CursorResult; its rowcount says whether the
    # statement's condition held.
    invariant(isinstance(result, CursorResult), "a write statement returns a CursorResult")
    return int(result.rowcount)


def _not_locked(now_ns: int) -> Any:
    return EndUser.locked_until.is_(None) | (EndUser.locked_until <= now_ns)


def _identifier_column(kind: IdentifierKind) -> Any:
    return {
        IdentifierKind.EMAIL: EndUser.email,
        IdentifierKind.PHONE: EndUser.phone,
        IdentifierKind.HANDLE: EndUser.handle,
    }[kind]


class UserRepository:
    """End users; every read an API caller reaches is scoped by tenant and mode."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, user: EndUser) -> None:
        self._session.add(user)
        await self._session.flush()

    async def get(self, user_id: uuid.UUID) -> EndUser | None:
        return await self._session.get(EndUser, user_id)

    async def get_for_tenant(
        self, *, tenant_id: uuid.UUID, mode: Mode, user_id: uuid.UUID, for_update: bool = False
    ) -> EndUser | None:
        """The user of the tenant and mode; ``for_update`` as for :meth:`get_in_tenant`."""
        statement = select(EndUser).where(
            EndUser.id == user_id, EndUser.tenant_id == tenant_id, EndUser.mode == mode.value
        )
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def get_in_tenant(
        self, *, tenant_id: uuid.UUID, user_id: uuid.UUID, for_update: bool = False
    ) -> EndUser | None:
        """The tenant's user in either mode, for the back office (a limit increase names a
        user, not a mode). With ``for_update``, as committed now and locked until this
        transaction ends (PostgreSQL; SQLite's write lock already serializes writers), so a
        concurrent disabling or erasure waits for this transaction, or is read here."""
        statement = select(EndUser).where(EndUser.id == user_id, EndUser.tenant_id == tenant_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def find_by_identifier(
        self, *, tenant_id: uuid.UUID, mode: Mode, identifier: Identifier
    ) -> EndUser | None:
        statement = select(EndUser).where(
            EndUser.tenant_id == tenant_id,
            EndUser.mode == mode.value,
            _identifier_column(identifier.kind) == identifier.value,
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def find_signable(
        self, *, tenant_id: uuid.UUID, mode: Mode, identifier: Identifier, for_update: bool = False
    ) -> EndUser | None:
        """The active user ``identifier`` names, if their tenant is active too. With
        ``for_update``, the user's row (not the tenant's) as committed now and locked until
        this transaction ends (PostgreSQL; SQLite's write lock already serializes writers)."""
        statement = (
            select(EndUser)
            .join(Tenant, Tenant.id == EndUser.tenant_id)
            .where(
                EndUser.tenant_id == tenant_id,
                EndUser.mode == mode.value,
                EndUser.status == _ACTIVE,
                Tenant.status == TenantStatus.ACTIVE.value,
                _identifier_column(identifier.kind) == identifier.value,
            )
        )
        if for_update:
            statement = statement.with_for_update(of=EndUser).execution_options(
                populate_existing=True
            )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def lock_signable(self, user_id: uuid.UUID) -> EndUser | None:
        """The user, if they and their tenant are active, as committed now and locked until
        this transaction ends (PostgreSQL; SQLite's write lock already serializes writers).

        For a change a signed-in user makes to their own account: a concurrent disabling or
        erasure (which updates this row first) waits for it, or is read here and refuses
        it. The user's row is the first lock such a change takes, as at sign-in and in an
        erasure, so their locks never cross."""
        statement = (
            select(EndUser)
            .join(Tenant, Tenant.id == EndUser.tenant_id)
            .where(
                EndUser.id == user_id,
                EndUser.status == _ACTIVE,
                Tenant.status == TenantStatus.ACTIVE.value,
            )
            .with_for_update(of=EndUser)
            .execution_options(populate_existing=True)
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def is_signable(self, user_id: uuid.UUID) -> bool:
        """Whether the user and their tenant are both active."""
        statement = (
            select(func.count())
            .select_from(EndUser)
            .join(Tenant, Tenant.id == EndUser.tenant_id)
            .where(
                EndUser.id == user_id,
                EndUser.status == _ACTIVE,
                Tenant.status == TenantStatus.ACTIVE.value,
            )
        )
        return int((await self._session.execute(statement)).scalar_one()) == 1

    async def list_for_tenant(
        self, *, tenant_id: uuid.UUID, mode: Mode, after_id: uuid.UUID | None, limit: int
    ) -> list[EndUser]:
        statement = (
            select(EndUser)
            .where(EndUser.tenant_id == tenant_id, EndUser.mode == mode.value)
            .order_by(EndUser.id)
            .limit(limit)
        )
        if after_id is not None:
            statement = statement.where(EndUser.id > after_id)
        return list((await self._session.execute(statement)).scalars())

    async def count_failure(
        self, *, user_id: uuid.UUID, now_ns: int, failures_max: int, locked_until: int
    ) -> bool:
        """Count one failed attempt; lock the account when it reaches ``failures_max``.
        Returns whether this failure locked it. Attempts while locked are not counted, so
        a lock always ends when it said it would."""
        await self._session.execute(
            update(EndUser)
            .where(EndUser.id == user_id, _not_locked(now_ns))
            .values(failed_login_count=EndUser.failed_login_count + 1)
            .execution_options(synchronize_session=False)
        )
        return await self.lock_if_exhausted(
            user_id=user_id, now_ns=now_ns, failures_max=failures_max, locked_until=locked_until
        )

    async def reserve_attempt(self, *, user_id: uuid.UUID, now_ns: int, failures_max: int) -> bool:
        """Count an attempt as a failure before it is checked (the caller commits this
        first, then refunds it on success). False, counting nothing, when the account is
        locked or earlier failures and attempts in flight already take every attempt left:
        concurrent guesses cannot all be checked before any of them is counted."""
        result = await self._session.execute(
            update(EndUser)
            .where(
                EndUser.id == user_id,
                _not_locked(now_ns),
                EndUser.failed_login_count < failures_max,
            )
            .values(failed_login_count=EndUser.failed_login_count + 1)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def refund_attempt(self, user_id: uuid.UUID) -> None:
        """Take back a reserved attempt that succeeded (a lock in between already reset
        the count: nothing to take back then)."""
        await self._session.execute(
            update(EndUser)
            .where(EndUser.id == user_id, EndUser.failed_login_count > 0)
            .values(failed_login_count=EndUser.failed_login_count - 1)
            .execution_options(synchronize_session=False)
        )

    async def lock_if_exhausted(
        self, *, user_id: uuid.UUID, now_ns: int, failures_max: int, locked_until: int
    ) -> bool:
        """Lock the account if its counted failures reached ``failures_max``; returns
        whether this call locked it."""
        locking = await self._session.execute(
            update(EndUser)
            .where(
                EndUser.id == user_id,
                _not_locked(now_ns),
                EndUser.failed_login_count >= failures_max,
            )
            .values(locked_until=locked_until, failed_login_count=0)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(locking) == 1


@dataclass(frozen=True, slots=True)
class AccessTokenRow:
    """What authenticating one request needs, read in one query."""

    token_expires_at: int
    session_id: uuid.UUID
    session_revoked_at: int | None
    session_expires_at: int
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    mode: str
    user_status: str
    tenant_status: str


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    token: UserToken
    session: UserSession
    user: EndUser
    tenant_status: str


class SessionRepository:
    """Sessions (token families) and their tokens."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *rows: UserSession | UserToken) -> None:
        self._session.add_all(rows)
        await self._session.flush()

    async def find_access(self, token_hash: bytes) -> AccessTokenRow | None:
        statement = (
            select(
                UserToken.expires_at,
                UserSession.id,
                UserSession.revoked_at,
                UserSession.expires_at,
                EndUser.id,
                EndUser.tenant_id,
                EndUser.mode,
                EndUser.status,
                Tenant.status,
            )
            .join(UserSession, UserSession.id == UserToken.session_id)
            .join(EndUser, EndUser.id == UserSession.user_id)
            .join(Tenant, Tenant.id == EndUser.tenant_id)
            .where(UserToken.token_hash == token_hash, UserToken.kind == "access")
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else AccessTokenRow(*row)

    async def find_refresh(self, token_hash: bytes) -> RefreshTokenRow | None:
        statement = (
            select(UserToken, UserSession, EndUser, Tenant.status)
            .join(UserSession, UserSession.id == UserToken.session_id)
            .join(EndUser, EndUser.id == UserSession.user_id)
            .join(Tenant, Tenant.id == EndUser.tenant_id)
            .where(UserToken.token_hash == token_hash, UserToken.kind == "refresh")
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else RefreshTokenRow(*row)

    async def spend_refresh(self, *, token_id: uuid.UUID, now_ns: int) -> bool:
        """Mark the refresh token used; False if it already was (a reuse, or a race)."""
        result = await self._session.execute(
            update(UserToken)
            .where(UserToken.id == token_id, UserToken.used_at.is_(None))
            .values(used_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def discard_unused_refresh(self, *, token_id: uuid.UUID) -> bool:
        """Delete a refresh token never exchanged; False if it is gone or was exchanged
        meanwhile (then it stays, to be recognised as reused)."""
        result = await self._session.execute(
            delete(UserToken)
            .where(
                UserToken.id == token_id,
                UserToken.kind == "refresh",
                UserToken.used_at.is_(None),
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def get_for_user(
        self, *, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> UserSession | None:
        statement = select(UserSession).where(
            UserSession.id == session_id, UserSession.user_id == user_id
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_active(
        self, *, user_id: uuid.UUID, now_ns: int, limit: int
    ) -> list[UserSession]:
        """The user's usable sessions, oldest first."""
        statement = (
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > now_ns,
            )
            .order_by(UserSession.id)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def revoke(
        self, *, session_ids: list[uuid.UUID], now_ns: int, reason: str
    ) -> list[uuid.UUID]:
        """Revoke the sessions not yet revoked among ``session_ids``; returns those."""
        if not session_ids:
            return []
        revocable = select(UserSession.id).where(
            UserSession.id.in_(session_ids), UserSession.revoked_at.is_(None)
        )
        ids = list((await self._session.execute(revocable)).scalars())
        if ids:
            await self._session.execute(
                update(UserSession)
                .where(UserSession.id.in_(ids), UserSession.revoked_at.is_(None))
                .values(revoked_at=now_ns, revoked_reason=reason)
                .execution_options(synchronize_session=False)
            )
        return ids

    async def revoke_for_reuse(self, *, session_id: uuid.UUID, now_ns: int) -> bool:
        """Revoke the session (if it is not yet) with the reason ``refresh_token_reused``;
        False if that reason was already recorded, by an earlier or a concurrent reuse.
        A session revoked for another reason (a logout, an erasure) keeps when it was
        revoked and takes this reason: its first reuse is still a theft signal."""
        result = await self._session.execute(
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.revoked_reason.is_(None) | (UserSession.revoked_reason != _REUSED),
            )
            .values(
                revoked_at=func.coalesce(UserSession.revoked_at, now_ns),
                revoked_reason=_REUSED,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def revoke_all(self, *, user_id: uuid.UUID, now_ns: int, reason: str) -> int:
        """Revoke every session of the user not yet revoked; returns how many."""
        result = await self._session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now_ns, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)

    async def delete_expired_access_tokens(self, *, session_id: uuid.UUID, now_ns: int) -> None:
        """Access tokens past their expiry are dead weight; refresh tokens stay while the
        session lives, because a used one presented again must still be recognised."""
        await self._session.execute(
            delete(UserToken)
            .where(
                UserToken.session_id == session_id,
                UserToken.kind == "access",
                UserToken.expires_at <= now_ns,
            )
            .execution_options(synchronize_session=False)
        )


class FactorRepository:
    """Second factors and the sign-in's second step: MFA tickets, TOTP, recovery codes,
    passkeys and WebAuthn challenges."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, *rows: MfaTicket | TotpFactor | RecoveryCode | Passkey) -> None:
        self._session.add_all(rows)
        await self._session.flush()

    async def find_ticket(self, token_hash: bytes) -> MfaTicket | None:
        statement = select(MfaTicket).where(MfaTicket.token_hash == token_hash)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def consume_ticket(self, *, ticket_id: uuid.UUID, now_ns: int) -> bool:
        result = await self._session.execute(
            update(MfaTicket)
            .where(MfaTicket.id == ticket_id, MfaTicket.consumed_at.is_(None))
            .values(consumed_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def count_ticket_failure(self, ticket_id: uuid.UUID) -> None:
        await self._session.execute(
            update(MfaTicket)
            .where(MfaTicket.id == ticket_id)
            .values(failed_attempts=MfaTicket.failed_attempts + 1)
            .execution_options(synchronize_session=False)
        )

    async def delete_dead_tickets(self, *, user_id: uuid.UUID, now_ns: int) -> None:
        """Spent or expired tickets serve no purpose; keeps each user's rows bounded."""
        await self._session.execute(
            delete(MfaTicket)
            .where(
                MfaTicket.user_id == user_id,
                (MfaTicket.expires_at <= now_ns) | MfaTicket.consumed_at.is_not(None),
            )
            .execution_options(synchronize_session=False)
        )

    async def get_totp(self, user_id: uuid.UUID) -> TotpFactor | None:
        return await self._session.get(TotpFactor, user_id)

    async def accept_totp_step(self, *, user_id: uuid.UUID, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) already was: a replay."""
        result = await self._session.execute(
            update(TotpFactor)
            .where(
                TotpFactor.user_id == user_id,
                TotpFactor.last_used_step.is_(None) | (TotpFactor.last_used_step < step),
            )
            .values(last_used_step=step)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def replace_recovery_codes(
        self, *, user_id: uuid.UUID, code_hashes: list[bytes], now_ns: int
    ) -> None:
        await self._session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        await self._session.execute(
            insert(RecoveryCode),
            [
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "code_hash": code_hash,
                    "created_at": now_ns,
                    "used_at": None,
                }
                for code_hash in code_hashes
            ],
        )

    async def spend_recovery_code(
        self, *, user_id: uuid.UUID, code_hash: bytes, now_ns: int
    ) -> bool:
        result = await self._session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def count_unused_recovery_codes(self, user_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def list_passkeys(self, *, user_id: uuid.UUID, limit: int) -> list[Passkey]:
        statement = (
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id).limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def count_passkeys(self, user_id: uuid.UUID) -> int:
        statement = select(func.count()).where(Passkey.user_id == user_id)
        return int((await self._session.execute(statement)).scalar_one())

    async def credential_id_exists(self, credential_id: bytes) -> bool:
        statement = select(func.count()).where(Passkey.credential_id == credential_id)
        return int((await self._session.execute(statement)).scalar_one()) > 0

    async def find_passkey(self, *, user_id: uuid.UUID, credential_id: bytes) -> Passkey | None:
        statement = select(Passkey).where(
            Passkey.user_id == user_id, Passkey.credential_id == credential_id
        )
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def delete_totp(self, user_id: uuid.UUID) -> int:
        """Forget the user's authenticator app, seed included (erasure); returns how many
        (0 or 1)."""
        result = await self._session.execute(
            delete(TotpFactor)
            .where(TotpFactor.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)

    async def rename_passkeys(self, *, user_id: uuid.UUID, name: str) -> int:
        """Give every passkey of the user ``name`` (erasure); returns how many."""
        result = await self._session.execute(
            update(Passkey)
            .where(Passkey.user_id == user_id)
            .values(name=name)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)

    async def advance_sign_count(
        self, *, passkey_id: uuid.UUID, seen: int, new: int, now_ns: int
    ) -> bool:
        """Store the new counter unless another sign-in moved it meanwhile (then the same
        assertion was accepted twice: refuse the second)."""
        result = await self._session.execute(
            update(Passkey)
            .where(Passkey.id == passkey_id, Passkey.sign_count == seen)
            .values(sign_count=new, last_used_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def replace_challenge(self, challenge: WebAuthnChallenge) -> None:
        """Store ``challenge`` as the user's only open one for its purpose: an older one
        is dropped, so each user holds at most one row per purpose."""
        await self._session.execute(
            delete(WebAuthnChallenge).where(
                WebAuthnChallenge.user_id == challenge.user_id,
                WebAuthnChallenge.purpose == challenge.purpose,
            )
        )
        self._session.add(challenge)
        await self._session.flush()

    async def consume_challenge(
        self, *, user_id: uuid.UUID, purpose: str, challenge: bytes, now_ns: int
    ) -> bool:
        """Spend the user's open, unexpired challenge of ``purpose`` equal to ``challenge``."""
        result = await self._session.execute(
            update(WebAuthnChallenge)
            .where(
                WebAuthnChallenge.user_id == user_id,
                WebAuthnChallenge.purpose == purpose,
                WebAuthnChallenge.challenge == challenge,
                WebAuthnChallenge.consumed_at.is_(None),
                WebAuthnChallenge.expires_at > now_ns,
            )
            .values(consumed_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def close_challenge(self, *, user_id: uuid.UUID, purpose: str, now_ns: int) -> None:
        """Spend the user's open challenge of ``purpose``, whatever it was: a ceremony that
        failed used it up (each user holds at most one per purpose)."""
        await self._session.execute(
            update(WebAuthnChallenge)
            .where(
                WebAuthnChallenge.user_id == user_id,
                WebAuthnChallenge.purpose == purpose,
                WebAuthnChallenge.consumed_at.is_(None),
            )
            .values(consumed_at=now_ns)
            .execution_options(synchronize_session=False)
        )


class DeviceRepository:
    """Bound device keys and the nonces they used."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, device: Device) -> None:
        self._session.add(device)
        await self._session.flush()

    async def get_for_user(self, *, user_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        statement = select(Device).where(Device.id == device_id, Device.user_id == user_id)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def list_active(self, *, user_id: uuid.UUID, limit: int) -> list[Device]:
        statement = (
            select(Device)
            .where(Device.user_id == user_id, Device.revoked_at.is_(None))
            .order_by(Device.id)
            .limit(limit)
        )
        return list((await self._session.execute(statement)).scalars())

    async def count_active(self, user_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            Device.user_id == user_id, Device.revoked_at.is_(None)
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def rename_all(self, *, user_id: uuid.UUID, name: str) -> int:
        """Give every device of the user, revoked ones included, ``name`` (erasure);
        returns how many."""
        result = await self._session.execute(
            update(Device)
            .where(Device.user_id == user_id)
            .values(name=name)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)

    async def use_nonce(
        self, *, device_id: uuid.UUID, nonce: str, expires_at: int, now_ns: int
    ) -> bool:
        """Remember ``nonce`` for the device; False if it was already used (a replay).

        Expired nonces of the device are dropped first, which bounds the table by what
        one device can send within the accepted clock skew.
        """
        await self._session.execute(
            delete(DeviceNonce).where(
                DeviceNonce.device_id == device_id, DeviceNonce.expires_at <= now_ns
            )
        )
        values = {"device_id": device_id, "nonce": nonce, "expires_at": expires_at}
        dialect = self._session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(DeviceNonce).values(values).on_conflict_do_nothing()
        result = await self._session.execute(statement)
        return _rowcount(result) == 1

    async def touch(self, *, device_id: uuid.UUID, now_ns: int) -> None:
        await self._session.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(last_used_at=now_ns)
            .execution_options(synchronize_session=False)
        )


class StepUpRepository:
    """Step-up challenges and the tokens their answers produce."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, step_up: StepUp) -> None:
        self._session.add(step_up)
        await self._session.flush()

    async def get_for_user(self, *, user_id: uuid.UUID, step_up_id: uuid.UUID) -> StepUp | None:
        statement = select(StepUp).where(StepUp.id == step_up_id, StepUp.user_id == user_id)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def find_by_token(self, token_hash: bytes) -> StepUp | None:
        statement = select(StepUp).where(StepUp.token_hash == token_hash)
        return (await self._session.execute(statement)).scalar_one_or_none()

    async def count_open(self, *, user_id: uuid.UUID, now_ns: int) -> int:
        """Step-ups still answerable or holding an unspent, unexpired token."""
        statement = select(func.count()).where(
            StepUp.user_id == user_id,
            StepUp.used_at.is_(None),
            (StepUp.expires_at > now_ns) | (StepUp.token_expires_at > now_ns),
        )
        return int((await self._session.execute(statement)).scalar_one())

    async def delete_dead(self, *, user_id: uuid.UUID, now_ns: int) -> None:
        """Drop the user's step-ups that can no longer be answered nor spent."""
        await self._session.execute(
            delete(StepUp).where(
                StepUp.user_id == user_id,
                StepUp.expires_at <= now_ns,
                StepUp.token_expires_at.is_(None) | (StepUp.token_expires_at <= now_ns),
            )
        )

    async def void_open(self, *, user_id: uuid.UUID, now_ns: int) -> None:
        """End every step-up of the user still answerable or holding an unspent token: the
        challenge expires now and the token counts as spent."""
        await self._session.execute(
            update(StepUp)
            .where(StepUp.user_id == user_id, StepUp.used_at.is_(None))
            .values(
                used_at=now_ns,
                expires_at=case((StepUp.expires_at > now_ns, now_ns), else_=StepUp.expires_at),
            )
            .execution_options(synchronize_session=False)
        )

    async def count_failure(self, step_up_id: uuid.UUID) -> None:
        await self._session.execute(
            update(StepUp)
            .where(StepUp.id == step_up_id)
            .values(failed_attempts=StepUp.failed_attempts + 1)
            .execution_options(synchronize_session=False)
        )

    async def answer(
        self, *, step_up_id: uuid.UUID, token_hash: bytes, token_expires_at: int, now_ns: int
    ) -> bool:
        """Attach the token; False if another answer already did."""
        result = await self._session.execute(
            update(StepUp)
            .where(StepUp.id == step_up_id, StepUp.answered_at.is_(None))
            .values(answered_at=now_ns, token_hash=token_hash, token_expires_at=token_expires_at)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def spend(self, *, step_up_id: uuid.UUID, now_ns: int) -> bool:
        """Spend the token once; False if it already was."""
        result = await self._session.execute(
            update(StepUp)
            .where(StepUp.id == step_up_id, StepUp.used_at.is_(None))
            .values(used_at=now_ns)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1
