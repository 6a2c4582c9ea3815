"""Migration 0032: payments carry a capture's claim; downgraded, a claim still under way is
forgotten with the fees priced for it (the older release prices its capture again), other
fees stay, and the upgrade comes back cleanly."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

from billfold.migrations import alembic_config, upgrade
from billfold.payments.models import Payment, PaymentFee
from migration_support import execute


def _payment(state: str, *, claim: int | None) -> tuple[uuid.UUID, list[Executable]]:
    payment_id = uuid.uuid4()
    statements: list[Executable] = [
        insert(Payment).values(
            id=payment_id,
            tenant_id=uuid.uuid4(),
            mode="test",
            kind="merchant",
            state=state,
            amount=1_000,
            currency="USD",
            captured_amount=600 if state == "captured" else 0,
            refunded_amount=0,
            capture_mode="manual",
            capture_claim=claim,
            capture_claimed_at=None if claim is None else 1,
            created_at=1,
            updated_at=1,
        ),
        insert(PaymentFee).values(
            transfer_id=uuid.uuid4(),
            payment_id=payment_id,
            rule="standard",
            description="1% + 10",
            amount=16,
            currency="USD",
            fixed_amount=10,
        ),
    ]
    return payment_id, statements


def test_a_claim_under_way_is_forgotten_with_its_fees_on_downgrade(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    _, claimed_rows = _payment("authorized", claim=600)
    captured, captured_rows = _payment("captured", claim=None)
    for statement in (*claimed_rows, *captured_rows):
        execute(url, statement)
    command.downgrade(alembic_config(url), "0031_dispute_resolution_claims")
    fees = execute(url, text("SELECT payment_id FROM payments_fees"))
    assert [uuid.UUID(str(value)) for value in fees] == [captured]
    with pytest.raises(DBAPIError):  # the columns are gone
        execute(url, text("SELECT capture_claim FROM payments_payments"))
    upgrade(url)
    claims = execute(url, text("SELECT capture_claim FROM payments_payments"))
    assert claims == ["None", "None"]
    assert execute(url, text("SELECT count(*) FROM payments_payments")) == ["2"]
