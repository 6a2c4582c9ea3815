"""The seam between a decided review case and the money it holds.

A case's movement is held as a pending ledger transfer by the payment flow that opened the
case. Risk does not import payments, so resolving the hold goes through this protocol; the
application installs the payments implementation on ``app.state.held_resolver``::

    class PaymentsHeldResolver:  # billfold.payments / flows wiring
        async def resolve(self, *, tenant_id, mode, reference, approve, expired) -> None:
            await billfold.payments.flows.review.resolve_held(
                runtime, tenant_id=tenant_id, mode=mode, reference=reference,
                approve=approve, expired=expired,
            )

The contract: ``approve=True`` posts the held movement, ``approve=False`` voids it (with
``expired``: because the case's hold lapsed, not because an analyst rejected it); calling
it again for the same reference and verdict changes nothing (the review flow retries after
a crash or a failure); it raises when the money did not move (the case then stays
``resolving`` and the recovery sweep calls it again).
"""

from __future__ import annotations

import uuid
from typing import Protocol

__all__ = ["HeldMovementResolver"]


class HeldMovementResolver(Protocol):
    async def resolve(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: str,
        reference: str,
        approve: bool,
        expired: bool = False,
    ) -> None:
        """Post (`approve`) or void the held movement `reference` (`expired`: its case's
        hold lapsed); idempotent; raises when the money did not move."""
        ...
