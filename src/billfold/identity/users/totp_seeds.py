"""TOTP seeds encrypted at rest with the key hierarchy's envelope encryption.

Each seed is sealed under its user's data key of purpose ``totp`` (owner ``usr_…``, so
erasing the user crypto-shreds it with the rest of their data), with associated data
binding it to the tenant, ``identity_user_totp.encrypted_secret`` and the user's row: a
sealed seed copied to another user's row does not decrypt there, and that user's codes are
simply refused.

Seeds stored in the clear before migration 0014 are sealed at their next use
(:func:`open_seed`), or all at once by :func:`seal_clear_seeds`
(``billfold keys seal-totp-seeds``).
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.users.models import EndUser, TotpFactor
from billfold.identity.users.types import USER_ID_PREFIX
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import DecryptionFailed, KeyDestroyed
from billfold.keys.keyring import Keyring
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id

__all__ = ["SEAL_BATCH_MAX", "open_seed", "seal_clear_seeds", "seal_seed"]

SEAL_BATCH_MAX = 10_000
_TABLE = "identity_user_totp"
_COLUMN = "encrypted_secret"

log = structlog.get_logger(__name__)


def _context(*, tenant_id: uuid.UUID, user_id: uuid.UUID) -> FieldContext:
    return FieldContext(
        tenant_id=tenant_id, purpose="totp", table=_TABLE, column=_COLUMN, row_id=user_id.hex
    )


async def seal_seed(
    session: AsyncSession,
    keyring: Keyring,
    factor: TotpFactor,
    *,
    tenant_id: uuid.UUID,
    secret: str,
    now_ns: int,
) -> None:
    """Store ``secret`` in ``factor`` encrypted, and nothing of it in the clear."""
    factor.encrypted_secret = await keyring.encrypt(
        session,
        secret.encode("ascii"),
        context=_context(tenant_id=tenant_id, user_id=factor.user_id),
        owner=format_id(USER_ID_PREFIX, factor.user_id),
        now_ns=now_ns,
    )
    factor.secret = None


async def open_seed(
    session: AsyncSession,
    keyring: Keyring,
    factor: TotpFactor,
    *,
    tenant_id: uuid.UUID,
    now_ns: int,
) -> str | None:
    """The factor's seed; None when it does not decrypt for this row (copied from another
    user's, or crypto-shredded). A seed still in the clear is sealed now."""
    if factor.encrypted_secret is None:
        secret = factor.secret
        invariant(secret is not None, "a TOTP factor has a seed")
        assert secret is not None
        await seal_seed(session, keyring, factor, tenant_id=tenant_id, secret=secret, now_ns=now_ns)
        return secret
    try:
        plaintext = await keyring.decrypt(
            session,
            factor.encrypted_secret,
            context=_context(tenant_id=tenant_id, user_id=factor.user_id),
        )
    except (DecryptionFailed, KeyDestroyed) as error:
        log.warning("identity.totp_seed_unreadable", user_id=factor.user_id.hex, code=error.code)
        return None
    return plaintext.decode("ascii")


async def seal_clear_seeds(
    session: AsyncSession, keyring: Keyring, *, now_ns: int, limit: int = 500
) -> int:
    """Seal up to ``limit`` seeds still stored in the clear; how many were sealed."""
    invariant(1 <= limit <= SEAL_BATCH_MAX, "a batch is bounded")
    rows = await session.execute(
        select(TotpFactor, EndUser.tenant_id)
        .join(EndUser, EndUser.id == TotpFactor.user_id)
        .where(TotpFactor.secret.is_not(None))
        .limit(limit)
    )
    sealed = 0
    for factor, tenant_id in rows:
        secret = factor.secret
        assert secret is not None
        await seal_seed(session, keyring, factor, tenant_id=tenant_id, secret=secret, now_ns=now_ns)
        sealed += 1
    await session.flush()
    return sealed
