"""Automated responses: applied from a decision in its transaction (and enforced on the
ledger after it), applied by hand over HTTP, and reversed only once a second operator
approves: accounts frozen then unfrozen, limits lowered then restored, outgoing holds
lifted; every apply and reversal audited."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.flows.risk_cases import enforce_responses
from billfold.identity.operators.executors import ApprovedAction
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.types import Mode
from billfold.kit.ids import format_id
from billfold.payments.errors import LimitExceeded
from billfold.payments.service import check_spending_limits
from billfold.risk.cases.responses import apply_responses
from billfold.risk.reviews import active_responses
from billfold.risk.types import Movement, MovementKind, Response
from billfold.wallets.overrides import holder_limits
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    SignedIn,
    end_user,
    new_tenant,
    operator,
    operator_client,
)
from risk.cases.cases_support import (
    Holder,
    account_status,
    decision_for,
    funded_holder,
    store_decision,
)


@dataclass
class Desk:
    client: TestClient
    analyst: SignedIn
    officer: SignedIn
    holder: Holder
    database_url: str

    @property
    def user(self) -> str:
        return format_id("usr", self.holder.user_id)

    def apply(self, kind: str, **extra: object) -> dict[str, object]:
        body = {"user_id": self.user, "kind": kind, "reason": "Account takeover suspected", **extra}
        answer = self.client.post("/v1/risk/responses", json=body, headers=self.analyst.headers)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def get(self, response_id: object) -> dict[str, object]:
        answer = self.client.get(f"/v1/risk/responses/{response_id}", headers=self.analyst.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def reverse(self, response_id: object, who: SignedIn | None = None) -> dict[str, object]:
        answer = self.client.post(
            f"/v1/risk/responses/{response_id}/reverse",
            json={"reason": "Customer verified in branch"},
            headers=(who or self.analyst).headers,
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def approve(self, approval_id: object, who: SignedIn) -> dict[str, object]:
        answer = self.client.post(f"/v1/approvals/{approval_id}/approve", headers=who.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture
def desk(database_url: str) -> Iterator[Desk]:
    tenant_id = new_tenant(database_url).tenant.id
    analyst = operator(database_url, tenant_id=tenant_id, roles=[Role.RISK_ANALYST])
    officer = operator(database_url, tenant_id=tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    user = end_user(database_url, tenant_id=tenant_id)
    holder = funded_holder(database_url, tenant_id=tenant_id, user=user)
    with operator_client(database_url) as client:
        yield Desk(client, analyst, officer, holder, database_url)


def _in_force(desk: Desk) -> frozenset[Response]:
    return run_in_unit_of_work(
        desk.database_url,
        lambda session: active_responses(
            session, tenant_id=desk.holder.tenant_id, mode="test", user_id=desk.holder.user_id
        ),
    )


def _audited(desk: Desk, target: object) -> list[str]:
    async def read(session: AsyncSession) -> list[str]:
        rows = await session.execute(
            select(AuditEntry.action)
            .where(AuditEntry.target == target)
            .order_by(AuditEntry.sequence)
        )
        return list(rows.scalars())

    return run_in_unit_of_work(desk.database_url, read)


def test_a_freeze_is_undone_only_after_a_second_operator_approves(desk: Desk) -> None:
    applied = desk.apply("freeze_account")
    assert applied["state"] == "active" and applied["decision_id"] is None
    wallet = format_id("acc", desk.holder.wallet_id)
    assert applied["detail"] == {"accounts": [wallet], "frozen": [wallet]}
    assert account_status(desk.database_url, desk.holder) == "frozen"
    reversal = desk.reverse(applied["id"])
    assert reversal["response"]["state"] == "reversing"  # type: ignore[index]
    assert reversal["approval_status"] == "pending"
    assert account_status(desk.database_url, desk.holder) == "frozen"
    assert Response.FREEZE_ACCOUNT in _in_force(desk)  # a pending reversal still holds
    own = desk.client.post(
        f"/v1/approvals/{reversal['approval_id']}/approve", headers=desk.analyst.headers
    )
    assert own.status_code == 403 and own.json()["code"] == "self_approval_forbidden"
    assert account_status(desk.database_url, desk.holder) == "frozen"
    approval = desk.approve(reversal["approval_id"], desk.officer)
    assert approval["status"] == "executed", approval
    assert approval["result"]["accounts_unfrozen"] == 1  # type: ignore[index]
    assert account_status(desk.database_url, desk.holder) == "active"
    reversed_ = desk.get(applied["id"])
    assert reversed_["state"] == "reversed" and reversed_["reversed_by"] == desk.officer.public_id
    assert _in_force(desk) == frozenset()
    assert _audited(desk, applied["id"]) == ["risk.response.applied", "risk.response.reversed"]
    again = desk.client.post(
        f"/v1/risk/responses/{applied['id']}/reverse",
        json={"reason": "again"},
        headers=desk.analyst.headers,
    )
    assert again.status_code == 409 and again.json()["code"] == "response_not_active"


def test_executing_a_reversal_again_changes_nothing(desk: Desk) -> None:
    applied = desk.apply("freeze_account")
    reversal = desk.reverse(applied["id"])
    desk.approve(reversal["approval_id"], desk.officer)
    state = desk.client.app.state  # type: ignore[attr-defined]
    executor = state.approval_executors.external[ActionType.RISK_RESPONSE_REVERSAL]
    from billfold.kit.ids import parse_id

    action = ApprovedAction(
        approval_id=parse_id("apr", str(reversal["approval_id"])),
        tenant_id=desk.holder.tenant_id,
        action_type=ActionType.RISK_RESPONSE_REVERSAL,
        payload=f'{{"response_id":"{applied["id"]}"}}',
        requested_by=desk.analyst.operator_id,
        decided_by=desk.officer.operator_id,
        decided_at=time.time_ns(),
    )
    outcome = desk.client.portal.call(executor.execute, action)  # type: ignore[union-attr]
    assert outcome.succeeded and outcome.facts["already_reversed"] is True
    assert _audited(desk, applied["id"]) == ["risk.response.applied", "risk.response.reversed"]


def test_an_account_another_freeze_still_covers_stays_frozen(desk: Desk) -> None:
    first = desk.apply("freeze_account")
    second = desk.apply("freeze_account")
    assert second["detail"]["frozen"] == []  # type: ignore[index]  # frozen already
    reversal = desk.reverse(first["id"])
    approval = desk.approve(reversal["approval_id"], desk.officer)
    assert approval["result"]["accounts_unfrozen"] == 0  # type: ignore[index]
    assert account_status(desk.database_url, desk.holder) == "frozen"


def _spend(desk: Desk, amount: int) -> str:
    async def attempt(session: AsyncSession) -> str:
        try:
            await check_spending_limits(
                session,
                tenant_id=desk.holder.tenant_id,
                mode=Mode.TEST,
                user_id=desk.holder.user_id,
                currency="USD",
                amount=amount,
            )
        except LimitExceeded as refused:
            return str(refused.extensions["window"])
        return "ok"

    return run_in_unit_of_work(desk.database_url, attempt)


def _limits(desk: Desk) -> list[tuple[str, str, str]]:
    async def read(session: AsyncSession) -> list[tuple[str, str, str]]:
        found = await holder_limits(
            session,
            tenant_id=desk.holder.tenant_id,
            mode=Mode.TEST,
            user_id=desk.holder.user_id,
            currency="USD",
        )
        return [(limit.window, str(limit.limit_minor), limit.source) for limit in found.limits]

    return run_in_unit_of_work(desk.database_url, read)


def test_lowered_limits_are_enforced_then_restored_by_the_reversal(desk: Desk) -> None:
    # Tier 1 (the default): 1,000 USD per transfer; lowered to 10%: 100 USD.
    assert _spend(desk, 50_000) == "ok"
    applied = desk.apply("lower_limits", limit_bps=1_000)
    assert applied["detail"] == {"limit_bps": 1_000, "reduction_id": applied["id"]}
    assert _spend(desk, 50_000) == "per_transaction"
    assert _spend(desk, 10_000) == "ok"
    assert _limits(desk)[0] == ("per_transaction", "10000", "risk_reduction")
    headers = desk.officer.headers
    limits = desk.client.get(
        f"/v1/risk/responses?user_id={desk.user}&state=active", headers=headers
    ).json()
    assert [item["id"] for item in limits["items"]] == [applied["id"]]
    reversal = desk.reverse(applied["id"])
    assert _spend(desk, 50_000) == "per_transaction"  # still lowered while it waits
    desk.approve(reversal["approval_id"], desk.officer)
    assert _spend(desk, 50_000) == "ok"
    assert _limits(desk)[0] == ("per_transaction", "100000", "tier")


@pytest.mark.parametrize("kind", ["freeze_account", "hold_outgoing"])
def test_limit_bps_for_another_kind_than_lower_limits_is_refused(desk: Desk, kind: str) -> None:
    """`limit_bps` is only for `lower_limits`: another kind applied without it, silently.
    The served document says so too (schemathesis: positive_data_acceptance)."""
    body = {"user_id": desk.user, "kind": kind, "reason": "r", "limit_bps": 500}
    refused = desk.client.post("/v1/risk/responses", json=body, headers=desk.analyst.headers)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "validation_failed"
    document = desk.client.get("/openapi.json").json()
    schema = {**document, "$ref": "#/components/schemas/ResponseCreateRequest"}
    assert not jsonschema_rs.validator_for(schema).is_valid(body)
    assert jsonschema_rs.validator_for(schema).is_valid({**body, "kind": "lower_limits"})
    listed = desk.client.get("/v1/risk/responses", headers=desk.analyst.headers).json()
    assert listed["items"] == [] and _in_force(desk) == frozenset()


def test_a_refused_reversal_leaves_the_response_and_may_be_asked_again(desk: Desk) -> None:
    applied = desk.apply("hold_outgoing")
    assert applied["detail"] == {}
    reversal = desk.reverse(applied["id"])
    refused = desk.client.post(
        f"/v1/approvals/{reversal['approval_id']}/refuse",
        json={"note": "not convinced"},
        headers=desk.officer.headers,
    )
    assert refused.status_code == 200, refused.text
    assert Response.HOLD_OUTGOING in _in_force(desk)
    asked_again = desk.reverse(applied["id"], who=desk.officer)
    assert asked_again["approval_id"] != reversal["approval_id"]
    twice = desk.client.post(
        f"/v1/risk/responses/{applied['id']}/reverse",
        json={"reason": "x"},
        headers=desk.analyst.headers,
    )
    assert twice.status_code == 409  # a request is already waiting
    desk.approve(asked_again["approval_id"], desk.analyst)
    assert _in_force(desk) == frozenset()


def test_a_decisions_responses_apply_in_its_transaction_and_the_freeze_after_it(
    desk: Desk,
) -> None:
    movement = Movement(
        tenant_id=desk.holder.tenant_id,
        mode="test",
        kind=MovementKind.WITHDRAWAL,
        amount=90_000,
        currency="USD",
        occurred_at_ns=time.time_ns(),
        user_id=desk.holder.user_id,
        reference=f"pay_{uuid.uuid4().hex}",
    )
    wanted = (Response.FREEZE_ACCOUNT, Response.LOWER_LIMITS, Response.HOLD_OUTGOING)
    decision = decision_for(movement, responses=wanted)

    async def decide(session: AsyncSession) -> list[uuid.UUID]:
        await store_decision(session, decision, movement)
        return await apply_responses(
            session, decision=decision, movement=movement, at_ns=time.time_ns(), lower_limits_bps=0
        )

    applied = run_in_unit_of_work(desk.database_url, decide)
    assert len(applied) == 3
    assert _in_force(desk) == frozenset(wanted)
    assert account_status(desk.database_url, desk.holder) == "active"  # not enforced yet
    assert _spend(desk, 1) == "per_transaction"  # 0 bps: nothing may be sent
    state = desk.client.app.state  # type: ignore[attr-defined]
    enforced = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: enforce_responses(state.unit_of_work, state.ledger, response_ids=applied)
    )
    assert enforced == 1 and account_status(desk.database_url, desk.holder) == "frozen"
    again = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: enforce_responses(state.unit_of_work, state.ledger, response_ids=applied)
    )
    assert again == 0
    second = decision_for(movement, responses=wanted)
    repeated = run_in_unit_of_work(
        desk.database_url,
        lambda session: apply_responses(
            session, decision=second, movement=movement, at_ns=time.time_ns()
        ),
    )
    assert repeated == []  # each kind is active already
    listed = desk.client.get(
        f"/v1/risk/responses?user_id={desk.user}", headers=desk.analyst.headers
    ).json()
    assert {item["decision_id"] for item in listed["items"]} == {format_id("rdc", decision.id)}
    assert {item["kind"] for item in listed["items"]} == {r.value for r in wanted}
    anonymous = Movement(**{**_fields(movement), "user_id": None})
    nobody = run_in_unit_of_work(
        desk.database_url,
        lambda session: apply_responses(
            session, decision=second, movement=anonymous, at_ns=time.time_ns()
        ),
    )
    assert nobody == []


def _fields(movement: Movement) -> dict[str, object]:
    return {name: getattr(movement, name) for name in Movement.__slots__}  # type: ignore[attr-defined]


def test_who_may_apply_list_and_reverse(desk: Desk) -> None:
    support = operator(desk.database_url, tenant_id=desk.holder.tenant_id, roles=[Role.SUPPORT])
    body = {"user_id": desk.user, "kind": "hold_outgoing", "reason": "r"}
    refused = desk.client.post("/v1/risk/responses", json=body, headers=support.headers)
    assert refused.status_code == 403
    assert desk.client.get("/v1/risk/responses", headers=support.headers).status_code == 403
    applied = desk.apply("hold_outgoing")
    asked = desk.reverse(applied["id"], who=support)  # support may ask
    refused_approval = desk.client.post(
        f"/v1/approvals/{asked['approval_id']}/approve", headers=support.headers
    )
    assert refused_approval.status_code == 403
    intruder_tenant = new_tenant(desk.database_url).tenant.id
    intruder = operator(desk.database_url, tenant_id=intruder_tenant, roles=[Role.RISK_ANALYST])
    hidden = desk.client.get(f"/v1/risk/responses/{applied['id']}", headers=intruder.headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "response_not_found"
    theirs = desk.client.post("/v1/risk/responses", json=body, headers=intruder.headers)
    assert theirs.status_code == 404 and theirs.json()["code"] == "risk_subject_not_found"
    assert desk.client.get("/v1/risk/responses", headers=intruder.headers).json()["items"] == []
    other_user = end_user(desk.database_url, tenant_id=intruder_tenant)
    assert other_user != desk.user


def test_a_freeze_a_crash_left_unenforced_is_enforced_by_recovery(desk: Desk) -> None:
    from billfold.flows.risk_cases import recover
    from billfold.kit.clock import SystemClock
    from risk.cases.cases_support import LedgerResolver

    movement = Movement(
        tenant_id=desk.holder.tenant_id,
        mode="test",
        kind=MovementKind.P2P,
        amount=1_000,
        currency="USD",
        occurred_at_ns=time.time_ns(),
        user_id=desk.holder.user_id,
    )
    decision = decision_for(movement, responses=(Response.FREEZE_ACCOUNT,))
    run_in_unit_of_work(
        desk.database_url,
        lambda session: apply_responses(
            session, decision=decision, movement=movement, at_ns=time.time_ns()
        ),
    )  # ... and the process stops before enforce_responses
    assert account_status(desk.database_url, desk.holder) == "active"
    state = desk.client.app.state  # type: ignore[attr-defined]
    recovered = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: recover(
            state.unit_of_work,
            state.ledger,
            LedgerResolver(state.ledger),
            clock=SystemClock(),
            older_than_s=0,
        )
    )
    assert recovered.enforced == 1
    assert account_status(desk.database_url, desk.holder) == "frozen"


def test_a_freeze_reversed_before_it_was_enforced_never_freezes(desk: Desk) -> None:
    movement = Movement(
        tenant_id=desk.holder.tenant_id,
        mode="test",
        kind=MovementKind.P2P,
        amount=1_000,
        currency="USD",
        occurred_at_ns=time.time_ns(),
        user_id=desk.holder.user_id,
    )
    decision = decision_for(movement, responses=(Response.FREEZE_ACCOUNT,))
    [response_id] = run_in_unit_of_work(
        desk.database_url,
        lambda session: apply_responses(
            session, decision=decision, movement=movement, at_ns=time.time_ns()
        ),
    )
    reversal = desk.reverse(format_id("rrs", response_id))
    approval = desk.approve(reversal["approval_id"], desk.officer)
    assert approval["result"]["accounts_unfrozen"] == 0  # type: ignore[index]
    state = desk.client.app.state  # type: ignore[attr-defined]
    enforced = desk.client.portal.call(  # type: ignore[union-attr]
        lambda: enforce_responses(state.unit_of_work, state.ledger, response_ids=[response_id])
    )
    assert enforced == 0
    assert account_status(desk.database_url, desk.holder) == "active"
