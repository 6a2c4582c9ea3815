"""Disputes claim their outcome before the ledger moves money: a dispute may be
``winning`` or ``losing`` (the outcome claimed, its ledger steps under way) between
``open`` and ``won``/``lost``, so two opposite resolutions at once cannot both apply.

Revision ID: 0031_dispute_resolution_claims
Revises: 0030_webhook_failing_since
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0031_dispute_resolution_claims"
down_revision = "0030_webhook_failing_since"
branch_labels = None
depends_on = None

_DISPUTES = "payments_disputes"
_STATES = "'opening', 'open', 'won', 'lost'"


def _states(allowed: str) -> None:
    with op.batch_alter_table(_DISPUTES) as table:
        table.drop_constraint(f"ck_{_DISPUTES}_state", type_="check")
        table.create_check_constraint(op.f(f"ck_{_DISPUTES}_state"), f"state IN ({allowed})")


def upgrade() -> None:
    _states(f"{_STATES}, 'winning', 'losing'")


def downgrade() -> None:
    # A claimed resolution goes back to `open`, to be resolved again by the older release
    # (resolved with the same outcome, its ledger steps, whose ids derive from the
    # dispute, are found applied and not applied twice).
    op.execute(f"UPDATE {_DISPUTES} SET state = 'open' WHERE state IN ('winning', 'losing')")
    _states(_STATES)
