"""Migration 0031: disputes may be `winning` or `losing` (an outcome claimed); downgraded,
a claimed dispute goes back to `open`, and the upgrade comes back cleanly."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.sql.expression import Executable

from billfold.migrations import alembic_config, upgrade
from billfold.payments.models import Dispute
from migration_support import check_constraint, execute


def _dispute(state: str) -> Executable:
    return insert(Dispute).values(
        id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        amount=10,
        held_amount=0,
        state=state,
        opened_by="tenant",
        evidence_json="[]",
        created_at=1,
        updated_at=1,
    )


def test_claimed_states_come_and_go(isolated_database_url: str) -> None:
    url = isolated_database_url
    assert "losing" in check_constraint(url, "payments_disputes", "state")
    for state in ("winning", "losing", "won"):
        execute(url, _dispute(state))
    command.downgrade(alembic_config(url), "0030_webhook_failing_since")
    check = check_constraint(url, "payments_disputes", "state")
    assert "opening" in check and "winning" not in check and "losing" not in check
    states = execute(url, select(Dispute.state).order_by(Dispute.state))
    assert states == ["open", "open", "won"]
    upgrade(url)
    assert "winning" in check_constraint(url, "payments_disputes", "state")
