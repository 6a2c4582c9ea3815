"""Identity's events for tenants' systems: users, devices, MFA and API keys, written to the
transactional outbox (`billfold.events.outbox`) in the transaction of the change.

Payloads carry public ids, kinds and times only: never a secret (API key, TOTP seed,
recovery code, device key) nor personal data (email, phone, handle, device name) — a user
whose identifiers matter to a tenant's system is read through the API by id. Events of one
user (its creation, devices, factors, updates) share the user as aggregate, so they arrive
in order; an API key's events share the key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.outbox import emit
from billfold.identity.users.models import EndUser
from billfold.identity.users.types import USER_ID_PREFIX
from billfold.kit.auth import Mode
from billfold.kit.ids import format_id

__all__ = [
    "API_KEY_CREATED",
    "API_KEY_REVOKED",
    "DEVICE_BOUND",
    "DEVICE_REVOKED",
    "IDENTITY_EVENT_TYPES",
    "MFA_ENROLLED",
    "USER_CREATED",
    "USER_UPDATED",
    "api_key_created",
    "api_key_revoked",
    "device_bound",
    "device_revoked",
    "mfa_enrolled",
    "user_created",
    "user_updated",
]

USER_CREATED = "com.billfold.user.created.v1"
USER_UPDATED = "com.billfold.user.updated.v1"
DEVICE_BOUND = "com.billfold.device.bound.v1"
DEVICE_REVOKED = "com.billfold.device.revoked.v1"
MFA_ENROLLED = "com.billfold.user.mfa_enrolled.v1"
API_KEY_CREATED = "com.billfold.api_key.created.v1"
API_KEY_REVOKED = "com.billfold.api_key.revoked.v1"

IDENTITY_EVENT_TYPES: dict[str, str] = {
    USER_CREATED: "An end user signed up.",
    USER_UPDATED: "An end user changed (status, identifiers erased).",
    DEVICE_BOUND: "A user bound a device key.",
    DEVICE_REVOKED: "A user's device was revoked.",
    MFA_ENROLLED: "A user enrolled a second factor (TOTP, recovery codes).",
    API_KEY_CREATED: "An API key was created.",
    API_KEY_REVOKED: "An API key was revoked.",
}

_IDENTIFIER_KINDS = ("email", "phone", "handle")


def _identifier_kinds(user: EndUser) -> list[str]:
    """Which identifiers the user has: the kinds, never the values."""
    return [kind for kind in _IDENTIFIER_KINDS if getattr(user, kind) is not None]


def _user_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode | str,
    user_id: uuid.UUID,
    type: str,
    data: Mapping[str, Any],
    now_ns: int,
) -> None:
    user = format_id(USER_ID_PREFIX, user_id)
    emit(
        session,
        tenant_id=tenant_id,
        mode=Mode(mode),
        type=type,
        subject=user,
        aggregate_id=user_id,
        data={"user_id": user, **data},
        occurred_at_ns=now_ns,
    )


def user_created(session: AsyncSession, *, user: EndUser, now_ns: int) -> None:
    _user_event(
        session,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.id,
        type=USER_CREATED,
        data={
            "status": user.status,
            "identifiers": _identifier_kinds(user),
            "created_at": user.created_at,
        },
        now_ns=now_ns,
    )


def user_updated(session: AsyncSession, *, user: EndUser, changed: list[str], now_ns: int) -> None:
    """`changed` names the fields that changed (e.g. `email`, `status`), not their values."""
    _user_event(
        session,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.id,
        type=USER_UPDATED,
        data={
            "status": user.status,
            "identifiers": _identifier_kinds(user),
            "changed": sorted(changed),
        },
        now_ns=now_ns,
    )


def device_bound(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    device_id: str,
    algorithm: str,
    now_ns: int,
) -> None:
    _user_event(
        session,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        type=DEVICE_BOUND,
        data={"device_id": device_id, "algorithm": algorithm, "bound_at": now_ns},
        now_ns=now_ns,
    )


def device_revoked(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    user_id: uuid.UUID,
    device_id: str,
    now_ns: int,
) -> None:
    _user_event(
        session,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        type=DEVICE_REVOKED,
        data={"device_id": device_id, "revoked_at": now_ns},
        now_ns=now_ns,
    )


def mfa_enrolled(session: AsyncSession, *, user: EndUser, factor: str, now_ns: int) -> None:
    """`factor`: `totp` or `recovery_codes` (never the seed or the codes)."""
    _user_event(
        session,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.id,
        type=MFA_ENROLLED,
        data={"factor": factor, "enrolled_at": now_ns},
        now_ns=now_ns,
    )


def _api_key_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    api_key_id: uuid.UUID,
    type: str,
    data: Mapping[str, Any],
    now_ns: int,
) -> None:
    key = format_id("key", api_key_id)
    emit(
        session,
        tenant_id=tenant_id,
        mode=Mode(mode),
        type=type,
        subject=key,
        aggregate_id=api_key_id,
        data={"api_key_id": key, **data},
        occurred_at_ns=now_ns,
    )


def api_key_created(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    api_key_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_at: int | None,
    now_ns: int,
) -> None:
    """The key's id, name, scopes and expiry: never the secret or its hash."""
    _api_key_event(
        session,
        tenant_id=tenant_id,
        mode=mode,
        api_key_id=api_key_id,
        type=API_KEY_CREATED,
        data={"name": name, "scopes": scopes, "expires_at": expires_at, "created_at": now_ns},
        now_ns=now_ns,
    )


def api_key_revoked(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, api_key_id: uuid.UUID, now_ns: int
) -> None:
    _api_key_event(
        session,
        tenant_id=tenant_id,
        mode=mode,
        api_key_id=api_key_id,
        type=API_KEY_REVOKED,
        data={"revoked_at": now_ns},
        now_ns=now_ns,
    )
