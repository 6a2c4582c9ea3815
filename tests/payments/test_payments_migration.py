"""Migration 0007: matches the models of wallets, payments and connectors, and downgrades
and upgrades cleanly, on both backends."""

from __future__ import annotations

import asyncio
import uuid

from alembic import command
from sqlalchemy import insert, select

from billfold.connectors import models as connectors_models
from billfold.kit.db import create_engine, parse_database_url
from billfold.migrations import alembic_config, upgrade
from billfold.payments import models as payments_models
from billfold.wallets import models as wallets_models
from migration_support import schema_differences

_OURS = ("wallets_", "payments_", "connectors_")
assert connectors_models and payments_models and wallets_models  # registers the tables


def _differences(database_url: str) -> list[object]:
    return schema_differences(database_url, _OURS)


def test_the_migration_creates_exactly_the_modelled_tables(isolated_database_url: str) -> None:
    assert _differences(isolated_database_url) == []


def test_the_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0006_operators")
    assert len(_differences(isolated_database_url)) >= 12
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_the_payments_fx_migration_downgrades_and_upgrades_again(
    isolated_database_url: str,
) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0013_limit_overrides")
    missing = repr(_differences(isolated_database_url))
    for name in ("payments_monthly_volume", "fx_quote_id", "fee_returned", "fixed_amount"):
        assert name in missing
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_the_spend_time_migration_fills_in_when_payments_count(
    isolated_database_url: str,
) -> None:
    """0017 counts merchant payments from their authorization, others from their creation;
    it downgrades and upgrades again."""
    command.downgrade(alembic_config(isolated_database_url), "0014_totp_seeds")
    missing = repr(_differences(isolated_database_url))
    assert "spent_at" in missing
    payer, merchant_payment, p2p_payment, unpaid = (uuid.uuid4() for _ in range(4))
    payments = payments_models.Payment.__table__
    history = payments_models.PaymentStateChange.__table__

    async def seed_and_read() -> dict[uuid.UUID, int | None]:
        engine = create_engine(parse_database_url(isolated_database_url), pool_size=1)
        try:
            async with engine.begin() as connection:
                for payment_id, kind, state, who in (
                    (merchant_payment, "merchant", "authorized", payer),
                    (p2p_payment, "p2p", "succeeded", payer),
                    (unpaid, "merchant", "requires_payment", None),
                ):
                    await connection.execute(
                        insert(payments).values(
                            id=payment_id,
                            tenant_id=uuid.uuid4(),
                            mode="test",
                            kind=kind,
                            state=state,
                            amount=100,
                            currency="USD",
                            captured_amount=0,
                            refunded_amount=0,
                            payer_user_id=who,
                            capture_mode="manual",
                            created_at=1_000,
                            updated_at=1_000,
                        )
                    )
                await connection.execute(
                    insert(history).values(
                        id=uuid.uuid4(),
                        payment_id=merchant_payment,
                        from_state="requires_payment",
                        to_state="authorized",
                        at=5_000,
                    )
                )
            await asyncio.to_thread(upgrade, isolated_database_url)
            async with engine.connect() as connection:
                rows = await connection.execute(select(payments.c.id, payments.c.spent_at))
                return {row[0]: row[1] for row in rows}
        finally:
            await engine.dispose()

    spent = asyncio.run(seed_and_read())
    assert spent[merchant_payment] == 5_000
    assert spent[p2p_payment] == 1_000
    assert spent[unpaid] is None
    assert _differences(isolated_database_url) == []
    command.downgrade(alembic_config(isolated_database_url), "0014_totp_seeds")
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []
