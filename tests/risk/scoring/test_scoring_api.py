"""Risk models over HTTP through the SDK, on both backends: a risk analyst trains (shadow
versions with metrics), promotes (the previous active version retired) and reads drift
alerts; a support operator may neither read nor manage; another tenant's analyst sees none
of it; every act is audited."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from billfold.client import (
    BillfoldOperator,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from billfold.identity.operators.permissions import Role
from billfold.kit.ids import format_id, parse_id
from client.sdk_support import BASE_URL, running
from identity.identity_support import bootstrap_tenant
from identity.operators.operators_support import PASSWORD as OPERATOR_PASSWORD
from identity.operators.operators_support import (
    create_operator,
    new_tenant,
    operator,
    operator_client,
)
from risk.scoring.scoring_support import labelled_set, opened, write_decisions


def _decisions(database_url: str, tenant_id: uuid.UUID, seed: int, start_ns: int) -> None:
    async def run() -> None:
        async with opened(database_url) as unit_of_work:
            await write_decisions(
                unit_of_work,
                tenant_id=tenant_id,
                mode="live",
                rows=labelled_set(seed, 120),
                start_ns=start_ns,
            )

    asyncio.run(run())


def test_an_analyst_trains_promotes_and_reads_alerts(database_url: str) -> None:
    with running(database_url) as server:
        tenant_id = server.tenant.tenant.id
        _decisions(server.database_url, tenant_id, seed=1, start_ns=1_000)
        approver = server.signed_in_operator([Role.COMPLIANCE_OFFICER])
        with server.signed_in_operator([Role.RISK_ANALYST]) as analyst:

            def promoted(model_id: str) -> dict[str, Any]:
                """Asked for by the analyst, approved by the compliance officer."""
                asked = analyst.risk_models.promote(model_id)
                assert asked["status"] != "active" and asked["promotion_approval_id"]
                with pytest.raises(ConflictError) as twice:
                    analyst.risk_models.promote(model_id)
                assert twice.value.code == "risk_model_promotion_pending"
                with pytest.raises(PermissionDeniedError) as own:
                    analyst.approvals.approve(asked["promotion_approval_id"])
                assert own.value.code == "self_approval_forbidden"
                approval = approver.approvals.approve(asked["promotion_approval_id"])
                assert approval["status"] == "executed", approval
                model = analyst.risk_models.get(model_id)
                assert analyst.risk_models.promote(model_id) == model  # active: unchanged
                return model

            assert analyst.risk_models.list()["items"] == []
            trained = analyst.risk_models.train(mode="live")
            assert trained["learned"] == {"supervised": 120, "anomaly": 120}
            assert {m["status"] for m in trained["created"]} == {"shadow"}
            supervised = next(m for m in trained["created"] if m["kind"] == "supervised")
            assert supervised["metrics"]["run"]["samples"] == 120
            assert supervised["created_by"] is not None
            assert analyst.risk_models.get(supervised["id"]) == supervised
            assert analyst.risk_models.train(mode="live", kinds=["supervised"])["created"] == []
            assert analyst.risk_models.train(mode="test")["learned"] == {
                "supervised": 0,
                "anomaly": 0,
            }

            active = promoted(supervised["id"])
            assert active["status"] == "active" and active["promoted_by"] is not None
            _decisions(server.database_url, tenant_id, seed=2, start_ns=10**9)
            (second,) = analyst.risk_models.train(mode="live", kinds=["supervised"])["created"]
            assert second["version"] == 2 and second["trained_on"] == 240
            promoted(second["id"])
            assert analyst.risk_models.get(supervised["id"])["status"] == "retired"
            listed = list(analyst.risk_models.iterate(mode="live", limit=1))
            assert [m["version"] for m in listed if m["kind"] == "supervised"] == [2, 1]
            assert analyst.risk_models.list(mode="test")["items"] == []
            assert analyst.risk_models.list_alerts()["items"] == []
            with pytest.raises(NotFoundError) as missing:
                analyst.risk_models.get(f"rmv_{uuid.uuid4().hex}")
            assert missing.value.code == "risk_model_not_found"
            models = {m["id"] for m in listed}

        with server.signed_in_operator([Role.SUPPORT]) as support:
            with pytest.raises(PermissionDeniedError):
                support.risk_models.list()
            with pytest.raises(PermissionDeniedError):
                support.risk_models.train(mode="live")
        with server.signed_in_operator([Role.COMPLIANCE_OFFICER]) as officer:
            assert {m["id"] for m in officer.risk_models.iterate()} == models  # reads
            with pytest.raises(PermissionDeniedError):
                officer.risk_models.promote(second["id"])  # but does not manage
            actions = [entry["action"] for entry in officer.audit.iterate_entries()]
            assert actions.count("risk.model.trained") == 3
            assert actions.count("risk.model.promotion_requested") == 2
            assert actions.count("risk.model.promoted") == 2
        approver.close()
        assert parse_id("rmv", second["id"])


def test_another_tenants_analyst_sees_and_promotes_nothing(database_url: str) -> None:
    with running(database_url) as server:
        _decisions(server.database_url, server.tenant.tenant.id, seed=3, start_ns=1)
        with server.signed_in_operator([Role.RISK_ANALYST]) as analyst:
            created = analyst.risk_models.train(mode="live", kinds=["anomaly"])["created"]
            model_id = created[0]["id"]
        other = bootstrap_tenant(server.database_url, name="Other")
        intruder = create_operator(
            server.database_url, tenant_id=other.tenant.id, roles=[Role.RISK_ANALYST]
        )
        with BillfoldOperator(
            tenant_id=format_id("ten", other.tenant.id),
            base_url=BASE_URL,
            http_transport=server.transport(),
        ) as client:
            client.log_in(email=intruder.operator.email, password=OPERATOR_PASSWORD)
            assert client.risk_models.list()["items"] == []
            with pytest.raises(NotFoundError):
                client.risk_models.get(model_id)
            with pytest.raises(NotFoundError):
                client.risk_models.promote(model_id)


def test_a_promotion_cannot_be_asked_for_through_the_approvals_route(database_url: str) -> None:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    with operator_client(database_url) as client:
        asked = client.post(
            "/v1/approvals",
            json={
                "action_type": "risk_model_promotion",
                "reason": "straight to the approvals",
                "payload": {"model_id": f"rmv_{uuid.uuid4().hex}"},
            },
            headers=analyst.headers,
        )
        # Not a type that route takes: a promotion is asked for by the models API.
        assert asked.status_code == 422, asked.text
        assert asked.json()["code"] == "validation_failed"
