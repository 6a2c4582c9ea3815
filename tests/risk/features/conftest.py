from __future__ import annotations

import uuid

import pytest

from identity.identity_support import bootstrap_tenant
from risk.features.features_support import COUNTER_KINDS


@pytest.fixture(params=COUNTER_KINDS)
def counters(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tenant_id(database_url: str) -> uuid.UUID:
    """A real tenant (end users reference it)."""
    return bootstrap_tenant(database_url, name="Risk features").tenant.id
