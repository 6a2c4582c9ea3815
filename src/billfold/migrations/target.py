"""Every model the migrations build, registered on their metadata: what the migrated schema
must match (`env.py` hands it to Alembic; the migration tests compare against it)."""

from __future__ import annotations

from sqlalchemy import MetaData

from billfold.audit import models as audit_models
from billfold.connectors import models as connectors_models  # noqa: F401 (registers tables)
from billfold.events import models as events_models  # noqa: F401 (registers tables)
from billfold.fx import models as fx_models  # noqa: F401 (registers tables)
from billfold.identity import security_events
from billfold.identity.models import metadata as identity_metadata
from billfold.identity.operators import models as operators_models  # noqa: F401 (registers tables)
from billfold.identity.users import models as users_models  # noqa: F401 (registers tables)
from billfold.keys import models as keys_models  # noqa: F401 (registers tables)
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

__all__ = ["target_metadata"]

# Importing a models module registers its tables on the shared kit.orm metadata.
assert idempotency_models.IdempotencyKey.metadata is identity_metadata
assert security_events.SecurityEvent.metadata is identity_metadata
assert audit_models.AuditEntry.metadata is identity_metadata
target_metadata: list[MetaData] = [ledger_metadata, identity_metadata]
"""The ledger's own metadata and the shared `kit.orm` metadata every other domain uses."""
