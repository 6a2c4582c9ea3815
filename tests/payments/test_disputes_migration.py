"""Migration 0031: disputes may be `winning` or `losing` (an outcome claimed); downgraded,
a claimed dispute goes back to `open`, and the upgrade comes back cleanly."""

from __future__ import annotations

import asyncio
import uuid

from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.sql.expression import Executable

from billfold.kit.db import create_engine, parse_database_url
from billfold.migrations import alembic_config, upgrade
from billfold.payments.models import Dispute
from migration_support import check_constraint


def _execute(database_url: str, statement: Executable) -> list[str]:
    async def run() -> list[str]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(statement)
                return [str(row[0]) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


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
        _execute(url, _dispute(state))
    command.downgrade(alembic_config(url), "0030_webhook_failing_since")
    check = check_constraint(url, "payments_disputes", "state")
    assert "opening" in check and "winning" not in check and "losing" not in check
    states = _execute(url, select(Dispute.state).order_by(Dispute.state))
    assert states == ["open", "open", "won"]
    upgrade(url)
    assert "winning" in check_constraint(url, "payments_disputes", "state")
