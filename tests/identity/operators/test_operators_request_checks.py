"""Request-time checks of transactional executors, on both backends: a registered check
sees the canonical payload in the request's own unit of work, before the request is stored;
a refusal stores nothing (no request, no security event) and surfaces as problem+json. The
application registers the limit increase's (wallets' own cases are in
tests/wallets/test_limit_overrides.py) and the key rotation's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import MappingProxyType

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.flows.approvals import KeyRotationExecutor
from billfold.identity import service as identity_service
from billfold.identity.operators import flows, service
from billfold.identity.operators.errors import InvalidApprovalPayload, PermissionDenied
from billfold.identity.operators.executors import (
    ApprovalExecutors,
    ApprovedAction,
    ExecutionOutcome,
    RecordChangeExecutor,
    default_executors,
)
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.operators.types import Actor, OperatorPrincipal
from billfold.identity.security_events import SecurityEvent, SecurityEventType
from billfold.keys.errors import UnknownKey
from billfold.keys.keyring import PURPOSES
from billfold.keys.models import KeyEncryptionKey
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import InvariantViolation
from identity.identity_support import run_in_unit_of_work
from identity.operators.operators_support import (
    FAST_PASSWORDS,
    PASSWORD,
    end_user,
    new_tenant,
    operator,
    operator_client,
)
from keys.keys_support import local_keyring

HOLDER = "usr_" + "3" * 32
PROBLEM = "application/problem+json"


@dataclass
class RefusingCheck:
    """A check that refuses every request for ``HOLDER`` and notes what it saw: how many
    requests the tenant had stored when it ran, through the session it was given."""

    seen: list[tuple[uuid.UUID, ActionType, str, int]] = field(default_factory=list)

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        stored = await _count_requests(session, tenant_id)
        self.seen.append((tenant_id, action_type, payload, stored))
        if HOLDER in payload:
            raise InvalidApprovalPayload("Not this holder.")


class ExternalStandIn:
    """An external executor for the registry's own rules (never asked to execute here)."""

    async def check(self, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str) -> None:
        return None

    async def execute(self, action: ApprovedAction) -> ExecutionOutcome:
        raise AssertionError("not executed in these tests")


async def _count_requests(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    statement = select(func.count()).where(ApprovalRequest.tenant_id == tenant_id)
    return int((await session.execute(statement)).scalar_one())


async def _count_request_events(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    statement = select(func.count()).where(
        SecurityEvent.tenant_id == tenant_id,
        SecurityEvent.event_type == SecurityEventType.APPROVAL_REQUESTED.value,
    )
    return int((await session.execute(statement)).scalar_one())


@dataclass
class Desk:
    unit_of_work: UnitOfWork
    tenant_id: uuid.UUID

    async def operator(self, *roles: Role) -> OperatorPrincipal:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        now = SystemClock().now_ns
        async with self.unit_of_work.begin() as session:
            await service.create_operator(
                session,
                tenant_id=self.tenant_id,
                email=email,
                display_name="Operator",
                roles=roles,
                password=PASSWORD,
                actor=Actor.system(),
                now_ns=now(),
                passwords=FAST_PASSWORDS,
            )
        async with self.unit_of_work.begin() as session:
            login = await service.log_in(
                session,
                tenant_id=self.tenant_id,
                email=email,
                password=PASSWORD,
                now_ns=now(),
                passwords=FAST_PASSWORDS,
            )
        assert login is not None
        async with self.unit_of_work.begin() as session:
            return await service.verify_session(session, token=login.token, now_ns=now())

    async def request(
        self, executors: ApprovalExecutors, who: OperatorPrincipal, subject_id: str
    ) -> ApprovalRequest:
        return await flows.request_approval(
            self.unit_of_work,
            executors,
            principal=who,
            action_type=ActionType.LIMIT_INCREASE,
            payload={"subject_id": subject_id, "limit": "daily", "asset": "USD", "amount": 7},
            reason="Verified income",
            expires_in_s=None,
            clock=SystemClock(),
        )

    async def stored(self) -> tuple[int, int]:
        async with self.unit_of_work.begin() as session:
            return (
                await _count_requests(session, self.tenant_id),
                await _count_request_events(session, self.tenant_id),
            )


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[Desk]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    unit_of_work = UnitOfWork(engine)
    try:
        async with unit_of_work.begin() as session:
            tenant = await identity_service.create_tenant(
                session, name="Checks", now_ns=SystemClock().now_ns()
            )
        yield Desk(unit_of_work, tenant.id)
    finally:
        await engine.dispose()


def _checked(check: RefusingCheck) -> ApprovalExecutors:
    """Identity's own executors, with ``check`` on the limit increase."""
    executors = default_executors()
    return ApprovalExecutors(
        transactional=executors.transactional,
        external=executors.external,
        checks=MappingProxyType({ActionType.LIMIT_INCREASE: check}),
    )


@pytest.mark.anyio
async def test_a_refused_request_stores_nothing(desk: Desk) -> None:
    check = RefusingCheck()
    support = await desk.operator(Role.SUPPORT)
    with pytest.raises(InvalidApprovalPayload):
        await desk.request(_checked(check), support, HOLDER)
    assert await desk.stored() == (0, 0)
    # It saw the canonical payload (sorted keys, the amount a digit string), in the
    # tenant's unit of work before anything was added.
    canonical = f'{{"amount":"7","asset":"USD","limit":"daily","subject_id":"{HOLDER}"}}'
    assert check.seen == [(desk.tenant_id, ActionType.LIMIT_INCREASE, canonical, 0)]

    other = "usr_" + "4" * 32
    made = await desk.request(_checked(check), support, other)
    assert made.status == "pending"
    assert await desk.stored() == (1, 1)
    assert check.seen[-1][3] == 0  # still before the request was added
    # Without a check (identity alone), the same refused payload is simply recorded.
    assert (await desk.request(default_executors(), support, HOLDER)).status == "pending"
    assert len(check.seen) == 2


@pytest.mark.anyio
async def test_the_check_runs_after_the_permission_check(desk: Desk) -> None:
    check = RefusingCheck()
    finance = await desk.operator(Role.FINANCE)  # may not ask for limit increases
    with pytest.raises(PermissionDenied):
        await desk.request(_checked(check), finance, HOLDER)
    assert check.seen == []  # a caller without the right learns nothing from the check
    assert await desk.stored() == (0, 0)


def test_a_check_belongs_to_an_executor() -> None:
    check = RefusingCheck()
    with pytest.raises(InvariantViolation):
        ApprovalExecutors(
            transactional=MappingProxyType({}),
            external=MappingProxyType({}),
            checks=MappingProxyType({ActionType.LIMIT_INCREASE: check}),
        )
    recorder = RecordChangeExecutor()
    executors = ApprovalExecutors(
        transactional=MappingProxyType(
            {ActionType.LIMIT_INCREASE: recorder, ActionType.KEY_ROTATION: recorder}
        ),
        external=MappingProxyType({}),
        checks=MappingProxyType({ActionType.LIMIT_INCREASE: check}),
    )
    # An external executor replacing the transactional one brings its own check.
    replaced = executors.with_external(
        MappingProxyType({ActionType.LIMIT_INCREASE: ExternalStandIn()})
    )
    assert dict(replaced.checks) == {}
    kept = executors.with_external(
        MappingProxyType({ActionType.LEDGER_ADJUSTMENT: ExternalStandIn()})
    )
    assert dict(kept.checks) == {ActionType.LIMIT_INCREASE: check}
    # An external executor may have one too, run in the request's transaction (a reversal
    # locks its response there).
    external_checked = ApprovalExecutors(
        transactional=MappingProxyType({}),
        external=MappingProxyType({ActionType.LEDGER_ADJUSTMENT: ExternalStandIn()}),
        checks=MappingProxyType({ActionType.LEDGER_ADJUSTMENT: check}),
    )
    assert dict(external_checked.checks) == {ActionType.LEDGER_ADJUSTMENT: check}


def test_the_application_refuses_a_limit_increase_for_no_user_of_the_tenant(
    database_url: str,
) -> None:
    """The application's executors check a limit increase when it is asked for: a holder
    that is not one of the tenant's users is refused as not found, and nothing is stored;
    one that is, is asked for as before."""
    tenant_id = new_tenant(database_url).tenant.id
    support = operator(database_url, tenant_id=tenant_id, roles=[Role.SUPPORT])
    other_tenant = new_tenant(database_url).tenant.id
    holder = end_user(database_url, tenant_id=tenant_id)
    outsider = end_user(database_url, tenant_id=other_tenant)

    def body(subject_id: str) -> dict[str, object]:
        return {
            "action_type": "limit_increase",
            "reason": "Verified income",
            "payload": {"subject_id": subject_id, "limit": "daily", "asset": "USD", "amount": 9},
        }

    with operator_client(database_url) as client:
        for subject_id in (outsider, HOLDER):
            refused = client.post("/v1/approvals", json=body(subject_id), headers=support.headers)
            assert refused.status_code == 404, refused.text
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["code"] == "holder_not_found"
        assert client.get("/v1/approvals", headers=support.headers).json()["items"] == []
        assert _stored(database_url, tenant_id) == (0, 0)
        made = client.post("/v1/approvals", json=body(holder), headers=support.headers)
        assert made.status_code == 201, made.text
        assert made.json()["payload"]["subject_id"] == holder
    assert _stored(database_url, tenant_id) == (1, 1)


def _stored(database_url: str, tenant_id: uuid.UUID) -> tuple[int, int]:
    """The tenant's approval requests, and its security events of a request made."""

    async def count(session: AsyncSession) -> tuple[int, int]:
        return (
            await _count_requests(session, tenant_id),
            await _count_request_events(session, tenant_id),
        )

    return run_in_unit_of_work(database_url, count)


def test_the_application_refuses_a_rotation_of_no_key_when_it_is_asked_for(
    database_url: str,
) -> None:
    """A key rotation naming no key of the hierarchy is refused when it is made (422
    ``unknown_key``), before a second operator is asked, and nothing is stored; one naming
    a key is asked for as before. The refusal is the keys module's own: every purpose it
    knows passes."""
    tenant_id = new_tenant(database_url).tenant.id
    admin = operator(database_url, tenant_id=tenant_id, roles=[Role.ADMIN])

    def body(key_id: str) -> dict[str, object]:
        return {"action_type": "key_rotation", "reason": "Yearly", "payload": {"key_id": key_id}}

    with operator_client(database_url) as client:
        for key_id in ("pii-vault.kek", "PII", "audit", "tokens2"):
            refused = client.post("/v1/approvals", json=body(key_id), headers=admin.headers)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["code"] == UnknownKey.code == "unknown_key"
            assert key_id in refused.json()["detail"]
        assert client.get("/v1/approvals", headers=admin.headers).json()["items"] == []
        assert _stored(database_url, tenant_id) == (0, 0)
        for key_id in sorted(PURPOSES):
            made = client.post("/v1/approvals", json=body(key_id), headers=admin.headers)
            assert made.status_code == 201, made.text
            assert made.json()["payload"] == {"key_id": key_id}
    assert _stored(database_url, tenant_id) == (len(PURPOSES), len(PURPOSES))


@pytest.mark.anyio
async def test_a_rotation_of_no_key_approved_before_requests_were_checked_fails(
    desk: Desk,
) -> None:
    """The check is advisory: a request stored before it existed still reaches execution,
    which decides by the same keys-module lookup and fails it as ``unknown_key``, rotating
    nothing; the check refuses the same payload with the same code."""
    executor = KeyRotationExecutor(local_keyring())
    payload = '{"key_id":"pii-vault.kek"}'
    action = ApprovedAction(
        approval_id=uuid.uuid4(),
        tenant_id=desk.tenant_id,
        action_type=ActionType.KEY_ROTATION,
        payload=payload,
        requested_by=uuid.uuid4(),
        decided_by=uuid.uuid4(),
        decided_at=SystemClock().now_ns(),
    )
    async with desk.unit_of_work.begin() as session:
        outcome = await executor.execute(session, action)
        with pytest.raises(UnknownKey):
            await executor.check(
                session,
                tenant_id=desk.tenant_id,
                action_type=ActionType.KEY_ROTATION,
                payload=payload,
            )
        rotated = select(func.count()).where(KeyEncryptionKey.tenant_id == desk.tenant_id)
        assert (await session.execute(rotated)).scalar_one() == 0
    assert outcome == ExecutionOutcome(succeeded=False, facts={"failure": "unknown_key"})
