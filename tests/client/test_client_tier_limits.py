"""The SDK's tier limits: an operator asks for the tenant's own JPY figures
(`approvals.request_tier_limits_change`), another approves, and `wallets.tier_limits`
shows them; a removal brings the defaults back, and removing nothing is refused with its
own code. The typed answers name exactly the server's fields."""

from __future__ import annotations

from pathlib import Path

import pytest

import billfold.client.types
from billfold.app import create_app
from billfold.client import ConflictError, ValidationError
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from client.sdk_support import collect_unclosed_connections, running

_SHAPES = {
    "TierLimit": "TierLimitResponse",
    "TierDefault": "TierDefaultResponse",
    "TierLimits": "TierLimitsResponse",
    "LimitInForce": "LimitResponse",
}


def test_the_typed_answers_have_exactly_the_servers_fields(tmp_path: Path) -> None:
    collect_unclosed_connections()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    schemas = app.openapi()["components"]["schemas"]
    for typed_name, schema_name in _SHAPES.items():
        typed = getattr(billfold.client.types, typed_name)
        assert set(typed.__annotations__) == set(schemas[schema_name]["properties"]), typed_name


def test_an_operator_sets_and_removes_the_tenants_tier_limits(database_url: str) -> None:
    with running(database_url) as server:
        support = server.signed_in_operator([Role.SUPPORT])
        officer = server.signed_in_operator([Role.COMPLIANCE_OFFICER])
        with support, officer, server.billfold([Scope.WALLETS_READ]) as reader:
            asked = support.approvals.request_tier_limits_change(
                mode="test",
                tier=1,
                asset="JPY",
                per_transaction=50_000,
                daily=100_000,
                monthly=300_000,
                reason="Yen limits that fit yen",
            )
            assert asked["action_type"] == "tier_limits_change"
            assert asked["payload"]["limits"] == {
                "per_transaction": "50000",
                "daily": "100000",
                "monthly": "300000",
            }
            assert reader.wallets.tier_limits()["items"] == []
            assert officer.approvals.approve(asked["id"])["status"] == "executed"

            jpy = reader.wallets.tier_limits(currency="JPY")
            assert (jpy["mode"], jpy["currency"]) == ("test", "JPY")
            assert [(i["tier"], i["per_transaction"], i["source"]) for i in jpy["items"]] == [
                (0, "100", "default"),
                (1, "50000", "tenant"),
                (2, "10000", "default"),
                (3, "100000", "default"),
            ]
            assert jpy["items"][1]["approval_id"] == asked["id"]
            everything = reader.wallets.tier_limits()
            assert [(i["tier"], i["currency"]) for i in everything["items"]] == [(1, "JPY")]
            assert len(everything["defaults"]) == 4

            removal = support.approvals.request_tier_limits_removal(
                mode="test", tier=1, asset="JPY", reason="Back to the defaults"
            )
            assert removal["payload"]["limits"] is None
            assert officer.approvals.approve(removal["id"])["status"] == "executed"
            assert reader.wallets.tier_limits()["items"] == []
            with pytest.raises(ConflictError) as nothing:
                support.approvals.request_tier_limits_removal(
                    mode="test", tier=1, asset="JPY", reason="Again"
                )
            assert nothing.value.code == "tier_limits_not_set"
            with pytest.raises(ValidationError) as disordered:
                support.approvals.request_tier_limits_change(
                    mode="test",
                    tier=1,
                    asset="JPY",
                    per_transaction=5,
                    daily=4,
                    monthly=6,
                    reason="Oops",
                )
            assert disordered.value.code == "limits_out_of_order"
