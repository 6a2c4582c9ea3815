"""Tenants' own tier limits, per mode, KYC tier and currency, set through four eyes: a JPY
or ETH wallet gets limits that fit it (the default table's 1,000 whole units is about 6 USD
in yen and millions in ether). P2P transfers, withdrawals and merchant payments are checked
against them, and a holder's limits show them; other tenants, the other mode, other
currencies and other tiers keep the defaults; a holder's override above them still wins.
A change that could not apply is refused when it is asked for, storing nothing; executing
an approval again adds nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from billfold.audit.models import AuditEntry
from billfold.flows.approvals import TierLimitsChangeExecutor
from billfold.identity.operators.executors import ApprovedAction, ExecutionOutcome
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.payloads import canonical_payload
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.security_events import SecurityEvent, SecurityEventType
from billfold.identity.types import Mode
from billfold.wallets.models import TierLimit
from identity.operators.operators_support import SignedIn, operator
from payments.payments_support import TEST_CARD, User, World, problem

ETH = 10**18
"""One ether in its minor unit (wei)."""
JPY_TIER_1 = {"per_transaction": 50_000, "daily": 100_000, "monthly": 300_000}
ETH_TIER_1 = {"per_transaction": ETH // 10, "daily": 6 * ETH // 10, "monthly": ETH}
IBAN = "DE89370400440532013000"


def _change(
    tier: int,
    asset: str,
    limits: dict[str, Any] | None,
    *,
    mode: str = "test",
) -> dict[str, Any]:
    return {
        "action_type": "tier_limits_change",
        "reason": "Limits that fit the currency",
        "payload": {"mode": mode, "tier": tier, "asset": asset, "limits": limits},
    }


def _desk(world: World) -> tuple[SignedIn, SignedIn]:
    """A support operator who may ask, a compliance officer who may approve."""
    support = operator(world.database_url, tenant_id=world.tenant_id, roles=[Role.SUPPORT])
    compliance = operator(
        world.database_url, tenant_id=world.tenant_id, roles=[Role.COMPLIANCE_OFFICER]
    )
    return support, compliance


def _ask(world: World, who: SignedIn, body: dict[str, Any]) -> str:
    response = world.client.post("/v1/approvals", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return str(response.json()["id"])


def _approve(world: World, who: SignedIn, approval_id: str) -> dict[str, Any]:
    response = world.client.post(
        f"/v1/approvals/{approval_id}/approve", json={"note": "checked"}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _set(world: World, tier: int, asset: str, limits: dict[str, Any] | None, **kw: Any) -> str:
    """Through four eyes: asked by support, approved (and executed) by compliance."""
    support, compliance = _desk(world)
    approval_id = _ask(world, support, _change(tier, asset, limits, **kw))
    decided = _approve(world, compliance, approval_id)
    assert decided["status"] == "executed", decided
    return approval_id


def _top_up(world: World, user: User, amount: int, currency: str) -> None:
    topped = world.top_up(user, amount, currency=currency, card=TEST_CARD)
    assert topped.status_code == 201, topped.text
    world.deliver()
    assert world.wallet(user, currency)["available"] == amount


def _send(world: World, sender: User, recipient: User, amount: int, currency: str) -> Any:
    body = {"recipient": recipient.handle, "currency": currency, "amount": str(amount)}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def _withdraw(world: World, user: User, amount: int, currency: str) -> Any:
    body = {
        "amount": str(amount),
        "currency": currency,
        "method": "bank_transfer",
        "destination": IBAN,
    }
    return world.client.post("/v1/me/withdrawals", json=body, headers=user.auth)


def _limits(world: World, user: User, currency: str, key: str | None = None) -> dict[str, Any]:
    headers = world.api if key is None else {"Authorization": f"Bearer {key}"}
    response = world.client.get(
        f"/v1/users/{user.id}/limits", params={"currency": currency}, headers=headers
    )
    assert response.status_code == 200, response.text
    return {item["window"]: item for item in response.json()["limits"]}


def _tier_limits(world: World, key: str | None = None, **params: str) -> dict[str, Any]:
    headers = world.api if key is None else {"Authorization": f"Bearer {key}"}
    response = world.client.get("/v1/tier-limits", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refused(response: Any, window: str, limit: int) -> None:
    body = problem(response, 422, "limit_exceeded")
    assert (body["window"], body["limit"]) == (window, str(limit)), body


def _count(world: World, *statements: Any) -> tuple[int, ...]:
    async def count() -> tuple[int, ...]:
        async with world.runtime.unit_of_work.begin() as session:
            return tuple(
                [int((await session.execute(statement)).scalar_one()) for statement in statements]
            )

    result: tuple[int, ...] = world.client.portal.call(count)
    return result


def _stored(world: World) -> tuple[int, int, int]:
    """The tenant's approval requests, its security events of a request made, and its
    tier-limit rows."""
    requests, events, rows = _count(
        world,
        select(func.count()).where(ApprovalRequest.tenant_id == world.tenant_id),
        select(func.count()).where(
            SecurityEvent.tenant_id == world.tenant_id,
            SecurityEvent.event_type == SecurityEventType.APPROVAL_REQUESTED.value,
        ),
        select(func.count()).where(TierLimit.tenant_id == world.tenant_id),
    )
    return requests, events, rows


def test_jpy_and_eth_limits_set_through_four_eyes_bind_every_movement(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        _top_up(world, ann, 200_000, "JPY")
        _top_up(world, ann, 2 * ETH, "ETH")
        # The defaults first: 1,000 yen per transfer (tier 1), and 1,000 ether.
        _refused(_send(world, ann, bob, 5_000, "JPY"), "per_transaction", 1_000)
        assert _send(world, ann, bob, ETH // 2, "ETH").status_code == 201

        support, compliance = _desk(world)
        jpy = _ask(world, support, _change(1, "JPY", JPY_TIER_1))
        # Asked, not approved: nothing changes.
        _refused(_send(world, ann, bob, 5_000, "JPY"), "per_transaction", 1_000)
        decided = _approve(world, compliance, jpy)
        assert decided["status"] == "executed", decided
        assert decided["result"] == {
            "mode": "test",
            "tier": 1,
            "asset": "JPY",
            "operation": "set",
            "per_transaction": "50000",
            "daily": "100000",
            "monthly": "300000",
            "already_applied": False,
            "before_source": "default",
            "before_per_transaction": "1000",
            "before_daily": "2500",
            "before_monthly": "10000",
        }
        eth = _set(world, 1, "ETH", ETH_TIER_1)

        # JPY, P2P: under the tenant's figure passes, over it is refused with its figure.
        assert _send(world, ann, bob, 40_000, "JPY").status_code == 201
        _refused(_send(world, ann, bob, 50_001, "JPY"), "per_transaction", 50_000)
        assert _send(world, ann, bob, 50_000, "JPY").status_code == 201
        _refused(_send(world, ann, bob, 10_001, "JPY"), "daily", 100_000)
        assert world.wallet(bob, "JPY")["available"] == 90_000
        # ETH, withdrawals: a tenth of an ether per transfer now, not a thousand ethers.
        _refused(_withdraw(world, ann, ETH // 2, "ETH"), "per_transaction", ETH // 10)
        assert _withdraw(world, ann, ETH // 10, "ETH").status_code == 201
        # The P2P half-ether before the change counts toward the day: 0.5 + 0.1 of 0.6.
        _refused(_withdraw(world, ann, 1, "ETH"), "daily", 6 * ETH // 10)
        world.deliver()

        # A merchant payment's authorization is checked against them too.
        carol = world.user()
        _top_up(world, carol, 100_000, "JPY")
        shop = world.merchant("JPY")
        for amount, status in ((60_000, 422), (45_000, 200)):
            created = world.client.post(
                "/v1/payments",
                json={"merchant_id": shop, "amount": amount, "currency": "JPY"},
                headers=world.api,
            )
            assert created.status_code == 201, created.text
            authorized = world.client.post(
                f"/v1/me/payments/{created.json()['id']}/authorize", headers=carol.auth
            )
            assert authorized.status_code == status, authorized.text
            if status == 422:
                _refused(authorized, "per_transaction", 50_000)

        # What a holder's limits show is what is checked.
        shown = _limits(world, ann, "JPY")
        assert [(shown[w]["limit"], shown[w]["source"]) for w in shown] == [
            ("50000", "tier"),
            ("100000", "tier"),
            ("300000", "tier"),
        ]
        assert {item["tier_source"] for item in shown.values()} == {"tenant"}
        assert _limits(world, ann, "ETH")["per_transaction"]["tier_limit"] == str(ETH // 10)
        listed = _tier_limits(world)
        assert listed["mode"] == "test" and listed["currency"] is None
        assert [
            (i["tier"], i["currency"], i["per_transaction"], i["source"], i["approval_id"])
            for i in listed["items"]
        ] == [(1, "ETH", str(ETH // 10), "tenant", eth), (1, "JPY", "50000", "tenant", jpy)]
        assert [row["per_transaction_units"] for row in listed["defaults"]] == [
            "100",
            "1000",
            "10000",
            "100000",
        ]
        _audited(world, jpy)


def _audited(world: World, approval_id: str) -> None:
    """The request, the grant and the execution are recorded: two security events and
    the execution's audit entry with the payload, who asked, and the figures before and
    after."""
    (events,) = _count(
        world,
        select(func.count()).where(
            SecurityEvent.tenant_id == world.tenant_id,
            SecurityEvent.subject_id == approval_id,
            SecurityEvent.event_type.in_(
                [SecurityEventType.APPROVAL_REQUESTED.value, SecurityEventType.APPROVAL_GRANTED]
            ),
        ),
    )
    assert events == 2

    async def entry() -> tuple[str | None, str | None]:
        async with world.runtime.unit_of_work.begin() as session:
            row = (
                await session.execute(
                    select(AuditEntry).where(
                        AuditEntry.tenant_id == world.tenant_id,
                        AuditEntry.target == approval_id,
                        AuditEntry.action == "approval.executed",
                    )
                )
            ).scalar_one()
            return row.after, row.detail

    after, detail = world.client.portal.call(entry)
    assert after is not None and detail is not None
    assert json.loads(after)["before_per_transaction"] == "1000"
    assert json.loads(after)["per_transaction"] == "50000"
    assert json.loads(detail)["payload"]["asset"] == "JPY"
    assert json.loads(detail)["action_type"] == "tier_limits_change"


def test_tenants_and_modes_are_isolated(database_url: str) -> None:
    """A tenant's test-mode figures bind its test-mode holders only: its live-mode holders
    and another tenant's keep the defaults (their 5,000-yen transfer is refused by the
    default limit, not let through to fail for want of money), until a live-mode change."""
    with World(database_url, fees=False) as world, World(database_url, fees=False) as other:
        ann, bob = world.user(), world.user()
        live_ann, live_bob = world.user(mode=Mode.LIVE), world.user(mode=Mode.LIVE)
        outsider, outsider_payee = other.user(), other.user()
        _set(world, 1, "JPY", JPY_TIER_1)

        problem(_send(world, ann, bob, 5_000, "JPY"), 422, "insufficient_funds")
        _refused(_send(world, live_ann, live_bob, 5_000, "JPY"), "per_transaction", 1_000)
        _refused(_send(other, outsider, outsider_payee, 5_000, "JPY"), "per_transaction", 1_000)
        assert _limits(world, live_ann, "JPY", world.live_key)["daily"]["tier_limit"] == "2500"
        assert _limits(other, outsider, "JPY")["daily"]["tier_source"] == "default"
        assert _tier_limits(world, world.live_key)["items"] == []
        assert _tier_limits(other)["items"] == []

        live = {"per_transaction": 20_000, "daily": 40_000, "monthly": 80_000}
        _set(world, 1, "JPY", live, mode="live")
        problem(_send(world, live_ann, live_bob, 5_000, "JPY"), 422, "insufficient_funds")
        _refused(_send(world, live_ann, live_bob, 20_001, "JPY"), "per_transaction", 20_000)
        _refused(_send(world, ann, bob, 50_001, "JPY"), "per_transaction", 50_000)
        assert _tier_limits(world, world.live_key)["mode"] == "live"
        assert [i["per_transaction"] for i in _tier_limits(world, world.live_key)["items"]] == [
            "20000"
        ]
        _refused(_send(other, outsider, outsider_payee, 5_000, "JPY"), "per_transaction", 1_000)


def test_other_currencies_and_tiers_keep_the_defaults(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 500_000)
        _set(world, 1, "JPY", JPY_TIER_1)
        # USD at tier 1: the default table's 1,000.00 per transfer.
        _refused(_send(world, ann, bob, 150_000, "USD"), "per_transaction", 100_000)
        assert _limits(world, ann, "USD")["per_transaction"]["tier_source"] == "default"
        # JPY at tier 2: the default table's 10,000 yen, the tier 1 row notwithstanding.
        raised = world.client.put(
            f"/v1/users/{ann.id}/kyc-tier", json={"tier": 2}, headers=world.api
        )
        assert raised.status_code == 200, raised.text
        tier_2 = _limits(world, ann, "JPY")["per_transaction"]
        assert (tier_2["limit"], tier_2["tier_source"]) == ("10000", "default")
        _refused(_send(world, ann, bob, 10_001, "JPY"), "per_transaction", 10_000)

        every_tier = _tier_limits(world, currency="JPY")
        assert every_tier["currency"] == "JPY"
        assert [
            (i["tier"], i["per_transaction"], i["daily"], i["monthly"], i["source"])
            for i in every_tier["items"]
        ] == [
            (0, "100", "200", "1000", "default"),
            (1, "50000", "100000", "300000", "tenant"),
            (2, "10000", "25000", "100000", "default"),
            (3, "100000", "250000", "1000000", "default"),
        ]
        assert every_tier["items"][0]["approval_id"] is None
        usd = _tier_limits(world, currency="USD")["items"]
        assert [i["per_transaction"] for i in usd] == ["10000", "100000", "1000000", "10000000"]
        problem(
            world.client.get("/v1/tier-limits", params={"currency": "ZZZ"}, headers=world.api),
            422,
            "unsupported_currency",
        )


def _increase(subject: str, amount: int) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds",
        "payload": {
            "subject_id": subject,
            "limit": "per_transaction",
            "asset": "JPY",
            "amount": amount,
        },
    }


def test_an_override_above_the_tenants_figure_still_wins(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob, carol = world.user(), world.user(), world.user()
        _top_up(world, ann, 300_000, "JPY")
        _top_up(world, carol, 300_000, "JPY")
        support, compliance = _desk(world)
        above = _ask(world, support, _increase(ann.id, 80_000))
        below = _ask(world, support, _increase(carol.id, 20_000))
        _set(world, 1, "JPY", {"per_transaction": 50_000, "daily": 200_000, "monthly": 300_000})
        for approval_id in (above, below):
            assert _approve(world, compliance, approval_id)["status"] == "executed"

        assert _send(world, ann, bob, 70_000, "JPY").status_code == 201
        _refused(_send(world, ann, bob, 80_001, "JPY"), "per_transaction", 80_000)
        shown = _limits(world, ann, "JPY")["per_transaction"]
        assert (shown["limit"], shown["source"], shown["tier_limit"]) == (
            "80000",
            "override",
            "50000",
        )
        # An override below the tenant's figure does nothing (it never lowers a limit).
        assert _send(world, carol, bob, 45_000, "JPY").status_code == 201
        _refused(_send(world, carol, bob, 50_001, "JPY"), "per_transaction", 50_000)
        assert _limits(world, carol, "JPY")["per_transaction"]["source"] == "tier"


def _unappliable(world: World) -> list[tuple[dict[str, Any], int, str]]:
    """Changes that could not apply, each with the status and code it is refused with."""
    ordered = {"per_transaction": 10, "daily": 20, "monthly": 30}
    return [
        (_change(4, "JPY", ordered), 422, "unknown_tier"),
        (_change(-1, "JPY", ordered), 422, "unknown_tier"),
        (_change(1, "ZZZ", ordered), 422, "unsupported_currency"),
        (_change(1, "XXX", ordered), 422, "unsupported_currency"),
        (_change(1, "JPY", {**ordered, "monthly": 2**63}), 422, "amount_out_of_range"),
        (_change(1, "JPY", {**ordered, "per_transaction": 21}), 422, "limits_out_of_order"),
        (_change(1, "JPY", {**ordered, "daily": 31}), 422, "limits_out_of_order"),
        (_change(1, "JPY", None), 409, "tier_limits_not_set"),
        (_change(1, "JPY", None, mode="live"), 409, "tier_limits_not_set"),
    ]


def test_a_change_that_cannot_apply_is_refused_when_asked_and_stores_nothing(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        support, _ = _desk(world)
        for body, status, code in _unappliable(world):
            response = world.client.post("/v1/approvals", json=body, headers=support.headers)
            refused = problem(response, status, code)
            if code == "unknown_tier":
                assert refused["tiers"] == [0, 1, 2, 3]
            if code == "amount_out_of_range":
                assert refused["amount_max"] == str(2**63 - 1)
            if code == "unsupported_currency":
                assert refused["currency"] == body["payload"]["asset"]
            if code == "tier_limits_not_set":
                assert (refused["tier"], refused["currency"]) == (1, "JPY")
        # Shapes the payload does not take: the request's own validation refuses them.
        ordered = {"per_transaction": 10, "daily": 20, "monthly": 30}
        for payload in [
            {"mode": "test", "tier": 1, "asset": "JPY"},  # `limits` must be said, even null
            {"mode": "test", "tier": 1, "asset": "JPY", "limits": {"per_transaction": 1}},
            {"mode": "test", "tier": 1, "asset": "JPY", "limits": {**ordered, "daily": 0}},
            {"mode": "test", "tier": 1, "asset": "JPY", "limits": {**ordered, "daily": "1.5"}},
            {"mode": "test", "tier": "1", "asset": "JPY", "limits": ordered},
            {"mode": "test", "tier": True, "asset": "JPY", "limits": ordered},
            {"mode": "prod", "tier": 1, "asset": "JPY", "limits": ordered},
            {"mode": "test", "tier": 1, "asset": "jpy", "limits": ordered},
            {"mode": "test", "tier": 1, "asset": "JPY", "limits": ordered, "extra": 1},
        ]:
            body = {"action_type": "tier_limits_change", "reason": "r", "payload": payload}
            response = world.client.post("/v1/approvals", json=body, headers=support.headers)
            problem(response, 422, "validation_failed")
        # Without the permission to ask: refused first, whatever the payload.
        finance = operator(world.database_url, tenant_id=world.tenant_id, roles=[Role.FINANCE])
        for body in (_change(1, "JPY", ordered), _change(9, "ZZZ", None)):
            denied = world.client.post("/v1/approvals", json=body, headers=finance.headers)
            assert problem(denied, 403, "permission_denied")["required_permission"] == (
                "limits.tiers.request"
            )
        assert _stored(world) == (0, 0, 0)
        assert _tier_limits(world)["items"] == []
        # An applicable one is stored (and counted) as before.
        _ask(world, support, _change(1, "JPY", ordered))
        assert _stored(world) == (1, 1, 0)


def test_only_a_different_operator_with_the_approve_permission_approves(
    database_url: str,
) -> None:
    with World(database_url, fees=False) as world:
        analyst = operator(world.database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        officer = operator(
            world.database_url, tenant_id=world.tenant_id, roles=[Role.COMPLIANCE_OFFICER]
        )
        asked = _ask(world, analyst, _change(1, "JPY", JPY_TIER_1))
        # Another risk analyst may ask, not approve (`limits.tiers.approve`: compliance).
        colleague = operator(
            world.database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST]
        )
        denied = world.client.post(f"/v1/approvals/{asked}/approve", headers=colleague.headers)
        assert problem(denied, 403, "permission_denied")["required_permission"] == (
            "limits.tiers.approve"
        )
        by_officer = _ask(world, officer, _change(2, "JPY", JPY_TIER_1))
        itself = world.client.post(f"/v1/approvals/{by_officer}/approve", headers=officer.headers)
        problem(itself, 403, "self_approval_forbidden")
        assert _stored(world)[2] == 0
        refused = world.client.post(
            f"/v1/approvals/{asked}/refuse", json={"note": "no"}, headers=officer.headers
        )
        assert refused.json()["status"] == "refused"
        assert _stored(world)[2] == 0
        assert _tier_limits(world)["items"] == []


def test_a_removal_brings_the_defaults_back(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        _top_up(world, ann, 100_000, "JPY")
        _set(world, 1, "JPY", JPY_TIER_1)
        assert _send(world, ann, bob, 5_000, "JPY").status_code == 201
        support, compliance = _desk(world)
        removal = _ask(world, support, _change(1, "JPY", None))
        again = _ask(world, support, _change(1, "JPY", None))  # both asked while it is set
        decided = _approve(world, compliance, removal)
        assert decided["status"] == "executed"
        assert decided["result"]["operation"] == "remove"
        assert decided["result"]["before_source"] == "tenant"
        assert decided["result"]["before_per_transaction"] == "50000"
        _refused(_send(world, ann, bob, 5_000, "JPY"), "per_transaction", 1_000)
        assert _tier_limits(world)["items"] == []
        assert _limits(world, ann, "JPY")["per_transaction"]["tier_source"] == "default"
        # The second removal finds nothing left to remove when approved: it fails, changing
        # nothing; a new one is refused when asked.
        late = _approve(world, compliance, again)
        assert (late["status"], late["result"]) == ("failed", {"failure": "tier_limits_not_set"})
        response = world.client.post(
            "/v1/approvals", json=_change(1, "JPY", None), headers=support.headers
        )
        problem(response, 409, "tier_limits_not_set")
        # Set again: the latest change is in force, the history stays.
        _set(world, 1, "JPY", {"per_transaction": 3_000, "daily": 3_000, "monthly": 3_000})
        _refused(_send(world, ann, bob, 3_001, "JPY"), "per_transaction", 3_000)
        assert _stored(world)[2] == 3


def _approved(world: World, payload: dict[str, Any]) -> ApprovedAction:
    return ApprovedAction(
        approval_id=uuid.uuid4(),
        tenant_id=world.tenant_id,
        action_type=ActionType.TIER_LIMITS_CHANGE,
        payload=canonical_payload(ActionType.TIER_LIMITS_CHANGE, payload),
        requested_by=uuid.uuid4(),
        decided_by=uuid.uuid4(),
        decided_at=time.time_ns(),
    )


class _AbandonedError(Exception):
    """Abandons a unit of work (it rolls back)."""


def test_executing_an_approval_again_adds_nothing(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        executor = TierLimitsChangeExecutor()
        setting = _approved(
            world, {"mode": "test", "tier": 0, "asset": "JPY", "limits": JPY_TIER_1}
        )

        async def execute(action: ApprovedAction) -> ExecutionOutcome:
            async with world.runtime.unit_of_work.begin() as session:
                return await executor.execute(session, action)

        first = world.client.portal.call(execute, setting)
        again = world.client.portal.call(execute, setting)
        assert first.succeeded and again.succeeded
        assert (first.facts["already_applied"], again.facts["already_applied"]) == (False, True)
        assert _stored(world)[2] == 1
        # A removal executed twice: the second finds its own row, and does not fail.
        removal = _approved(world, {"mode": "test", "tier": 0, "asset": "JPY", "limits": None})
        assert world.client.portal.call(execute, removal).succeeded
        repeated = world.client.portal.call(execute, removal)
        assert repeated.succeeded and repeated.facts["already_applied"] is True
        assert _stored(world)[2] == 2
        assert _tier_limits(world)["items"] == []

        async def rolled_back() -> None:
            # The effect lives in the decision's transaction: a rollback takes it away.
            other = _approved(
                world, {"mode": "test", "tier": 0, "asset": "JPY", "limits": JPY_TIER_1}
            )
            try:
                async with world.runtime.unit_of_work.begin() as session:
                    assert (await executor.execute(session, other)).succeeded
                    raise _AbandonedError
            except _AbandonedError:
                pass

        world.client.portal.call(rolled_back)
        assert _stored(world)[2] == 2
        # Execution checks again: what cannot apply fails with the request-time code.
        for body, _, code in _unappliable(world):
            outcome = world.client.portal.call(execute, _approved(world, body["payload"]))
            assert (outcome.succeeded, dict(outcome.facts)) == (False, {"failure": code})
        assert _stored(world)[2] == 2


def test_the_database_refuses_half_a_change(database_url: str) -> None:
    """The CHECK behind the executor: three ordered figures, or none (a comparison with
    NULL must not let half a row through)."""
    with World(database_url, fees=False) as world:
        for figures in [(10, None, None), (None, 5, 5), (20, 10, 30), (0, 0, 0)]:

            async def insert(figures: tuple[int | None, ...] = figures) -> None:
                async with world.runtime.unit_of_work.begin() as session:
                    session.add(
                        TierLimit(
                            approval_id=uuid.uuid4(),
                            tenant_id=world.tenant_id,
                            mode="test",
                            tier=1,
                            currency="JPY",
                            per_transaction=figures[0],
                            daily=figures[1],
                            monthly=figures[2],
                            requested_by=uuid.uuid4(),
                            approved_by=uuid.uuid4(),
                            approved_at=time.time_ns(),
                        )
                    )

            with pytest.raises(IntegrityError):
                world.client.portal.call(insert)
        assert _stored(world)[2] == 0
