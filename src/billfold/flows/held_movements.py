"""The bridge from risk's review queue to the payments that hold the money: a decided case
posts (approve) or voids (reject) its held movement through
``billfold.payments.flows.review.resolve_held``.

``billfold.risk`` may not import payments, so the application installs this resolver on
``app.state.held_resolver`` (``billfold.risk.cases.resolver.HeldMovementResolver``).
"""

from __future__ import annotations

import uuid

from billfold.payments.flows.review import resolve_held
from billfold.payments.runtime import PaymentsRuntime

__all__ = ["PaymentsHeldResolver"]


class PaymentsHeldResolver:
    """Resolves held payments (``pay_…``), refunds (``ref_…``) and conversions (``cnv_…``)
    idempotently; raises when the money did not move (the case is then retried)."""

    def __init__(self, runtime: PaymentsRuntime) -> None:
        self._runtime = runtime

    async def resolve(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: str,
        reference: str,
        approve: bool,
        expired: bool = False,
    ) -> None:
        await resolve_held(
            self._runtime,
            tenant_id=tenant_id,
            mode=mode,
            reference=reference,
            approve=approve,
            expired=expired,
        )
