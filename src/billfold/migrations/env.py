"""Alembic environment: runs migrations over the async engine of `billfold.kit.db`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from billfold.audit import models as audit_models
from billfold.connectors import models as connectors_models  # noqa: F401 (registers tables)
from billfold.events import models as events_models  # noqa: F401 (registers tables)
from billfold.fx import models as fx_models  # noqa: F401 (registers tables)
from billfold.identity import security_events
from billfold.identity.models import metadata as identity_metadata
from billfold.identity.operators import models as operators_models  # noqa: F401 (registers tables)
from billfold.identity.users import models as users_models  # noqa: F401 (registers tables)
from billfold.keys import models as keys_models  # noqa: F401 (registers tables)
from billfold.kit.db import create_engine, parse_database_url
from billfold.kit.http import idempotency_models
from billfold.ledger.models import metadata as ledger_metadata
from billfold.payments import models as payments_models  # noqa: F401 (registers tables)
from billfold.payments.fees import models as fees_models  # noqa: F401 (registers tables)
from billfold.privacy import models as privacy_models  # noqa: F401 (registers tables)
from billfold.risk import models as risk_models  # noqa: F401 (registers tables)
from billfold.risk.cases import models as risk_cases_models  # noqa: F401 (registers tables)
from billfold.risk.features import models as risk_features_models  # noqa: F401 (registers tables)
from billfold.risk.scoring import models as risk_scoring_models  # noqa: F401 (registers tables)
from billfold.wallets import models as wallets_models  # noqa: F401 (registers tables)

# Importing a models module registers its tables on the shared kit.orm metadata.
assert idempotency_models.IdempotencyKey.metadata is identity_metadata
assert security_events.SecurityEvent.metadata is identity_metadata
assert audit_models.AuditEntry.metadata is identity_metadata
target_metadata = [ledger_metadata, identity_metadata]


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(parse_database_url(url), pool_size=1)
    try:  # a migration that raises must not leave its connection to the garbage collector
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online())
