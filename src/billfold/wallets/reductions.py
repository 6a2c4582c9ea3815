"""Risk reductions of spending limits: an end user's limits lowered to a fraction of their
tier's (or override's) figure while a risk ``lower_limits`` response is in force.

Put in place by ``billfold.risk.cases.responses`` in the transaction that applies the
response (keyed by the response id, so applying it twice adds nothing) and lifted when an
approved reversal undoes the response. The spending-limit check
(``payments.service.check_spending_limits``) and the limits a holder sees
(``wallets.overrides.holder_limits``) both read :func:`reduction_in_force`; several
reductions in force: the strongest (fewest basis points) applies.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.errors import invariant
from billfold.wallets.limits import BPS_WHOLE
from billfold.wallets.models import LimitReduction
from billfold.wallets.repository import WalletRepository

__all__ = ["add_reduction", "lift_reduction", "reduction_in_force"]


async def add_reduction(
    session: AsyncSession,
    *,
    reduction_id: uuid.UUID,
    tenant_id: uuid.UUID,
    mode: str,
    user_id: uuid.UUID,
    limit_bps: int,
    now_ns: int,
) -> bool:
    """Lower the user's limits to `limit_bps` / 10,000 of their figure (flush only); False
    when this reduction was recorded before."""
    invariant(0 <= limit_bps <= BPS_WHOLE, "a reduction leaves 0 to 10,000 basis points")
    return await WalletRepository(session).add_reduction_if_absent(
        LimitReduction(
            id=reduction_id,
            tenant_id=tenant_id,
            mode=mode,
            user_id=user_id,
            limit_bps=limit_bps,
            created_at=now_ns,
            lifted_at=None,
        )
    )


async def lift_reduction(session: AsyncSession, *, reduction_id: uuid.UUID, now_ns: int) -> bool:
    """Lift the reduction (flush only); False when it was absent or lifted already."""
    return await WalletRepository(session).lift_reduction(reduction_id=reduction_id, now_ns=now_ns)


async def reduction_in_force(session: AsyncSession, *, user_id: uuid.UUID) -> int | None:
    """The basis points of their limits the user keeps now, or None (no reduction)."""
    return await WalletRepository(session).reduction_in_force(user_id=user_id)
