"""`POST /v1/risk/labels`: simulator labels through the SDK, idempotent, scoped to the
key's tenant and mode, `risk:write` required, and only the simulator source."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from billfold.client.errors import PermissionDeniedError, ValidationError
from billfold.identity.types import Scope
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import format_id
from billfold.risk.models import RiskDecision, RiskLabel
from client.sdk_support import running


def _labels(database_url: str, tenant_id: uuid.UUID) -> list[RiskLabel]:
    async def read() -> list[RiskLabel]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).read() as session:
                statement = select(RiskLabel).where(RiskLabel.tenant_id == tenant_id)
                return list((await session.execute(statement)).scalars().all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _decision(database_url: str, tenant_id: uuid.UUID, reference: str) -> uuid.UUID:
    decision_id = uuid.uuid4()

    async def write() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).begin() as session:
                session.add(
                    RiskDecision(
                        id=decision_id, tenant_id=tenant_id, mode="test", kind="p2p",
                        reference=reference, user_id=None, payee=None, merchant_id=None,
                        device_id=None, amount=100, currency="USD", action="review",
                        score=500, reasons="[]", features="{}", hits="[]",
                        model_score=None, ruleset_version=None, created_at=1,
                    )
                )  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(write())
    return decision_id


def test_a_simulator_label_is_stored_once_and_linked_to_its_decision(database_url: str) -> None:
    with running(database_url) as server, server.billfold([Scope.RISK_WRITE]) as billfold:
        tenant_id = server.tenant.tenant.id
        reference = format_id("pay", uuid.uuid4())
        decision_id = _decision(database_url, tenant_id, reference)
        first = billfold.risk_labels.create(reference=reference, fraud=True)
        assert first["changed"] is True
        assert first["decision_id"] == format_id("rdc", decision_id)
        again = billfold.risk_labels.create(reference=reference, fraud=True)
        assert again["changed"] is False
        unlinked = billfold.risk_labels.create(
            reference=format_id("pay", uuid.uuid4()), fraud=False
        )
        assert unlinked["decision_id"] is None
        labels = _labels(database_url, tenant_id)
    assert sorted((label.fraud, label.source) for label in labels) == [
        (False, "simulator"),
        (True, "simulator"),
    ]
    assert {label.decision_id for label in labels} == {decision_id, None}


def test_labels_need_risk_write_and_the_simulator_source(database_url: str) -> None:
    reference = format_id("pay", uuid.uuid4())
    with running(database_url) as server:
        with (
            server.billfold([Scope.PAYMENTS_WRITE]) as billfold,
            pytest.raises(PermissionDeniedError),
        ):
            billfold.risk_labels.create(reference=reference, fraud=True)
        with server.billfold([Scope.RISK_WRITE]) as billfold:
            for body in (
                {"reference": reference, "fraud": True, "source": "analyst"},
                {"reference": "not-an-id", "fraud": True, "source": "simulator"},
            ):
                with pytest.raises(ValidationError):
                    billfold.request("POST", "/v1/risk/labels", json=body)
        assert _labels(database_url, server.tenant.tenant.id) == []
