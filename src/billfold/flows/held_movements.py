"""The bridge from risk's review queue to the payments that hold the money: a decided case
posts (approve) or voids (reject) its held movement through
``billfold.payments.flows.review.resolve_held``.

``billfold.risk`` may not import payments, so the application installs payments' resolver
(``PaymentsHeldResolver``, which payments' own review expiry uses too) on
``app.state.held_resolver`` (``billfold.risk.cases.resolver.HeldMovementResolver``).
"""

from __future__ import annotations

from billfold.payments.flows.review import PaymentsHeldResolver

__all__ = ["PaymentsHeldResolver"]
