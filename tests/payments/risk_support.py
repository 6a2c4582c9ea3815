"""A deterministic risk decider for payment scenarios (a test double of the
`billfold.risk.types.RiskDecider` protocol that stores real `RiskDecision` rows), and
helpers to read decisions and cases and to resolve held movements."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.ids import new_id
from billfold.payments.flows.review import expire_held, resolve_held
from billfold.risk.models import RiskCase, RiskDecision, RiskResponse
from billfold.risk.types import Action, Decision, Movement
from payments.payments_support import PASSWORD, User, World

T = TypeVar("T")

CHALLENGE, REVIEW, BLOCK = 9_001, 9_002, 9_003
BY_AMOUNT = {CHALLENGE: Action.CHALLENGE, REVIEW: Action.REVIEW, BLOCK: Action.BLOCK}


class AmountDecider:
    """Decides by the movement's amount (9_001 challenge unless the request stepped up,
    9_002 review, 9_003 block, anything else allow) and stores each decision."""

    def __init__(self, actions: Mapping[int, Action] = BY_AMOUNT) -> None:
        self.actions = dict(actions)
        self.seen: list[Movement] = []

    async def decide(self, session: AsyncSession, movement: Movement) -> Decision:
        self.seen.append(movement)
        action = self.actions.get(movement.amount, Action.ALLOW)
        if action is Action.CHALLENGE and movement.step_up_verified:
            action = Action.ALLOW
        decision = Decision(
            id=new_id(),
            action=action,
            score={Action.ALLOW: 0, Action.CHALLENGE: 300, Action.REVIEW: 600}.get(action, 1000),
            reasons=() if action is Action.ALLOW else (f"amount {movement.amount}",),
            features={"amount": movement.amount, "step_up_verified": movement.step_up_verified},
        )
        session.add(
            RiskDecision(
                id=decision.id,
                tenant_id=movement.tenant_id,
                mode=movement.mode,
                kind=movement.kind.value,
                reference=movement.reference,
                user_id=movement.user_id,
                payee=movement.payee,
                merchant_id=movement.merchant_id,
                device_id=movement.device_id,
                amount=movement.amount,
                currency=movement.currency,
                action=action.value,
                score=decision.score,
                reasons=json.dumps(list(decision.reasons)),
                features=json.dumps(dict(decision.features)),
                hits="[]",
                model_score=None,
                ruleset_version=None,
                created_at=movement.occurred_at_ns,
            )
        )
        await session.flush()
        return decision


def install(world: World, decider: AmountDecider | None = None) -> AmountDecider:
    """Put the decider on the running app (payments and FX)."""
    chosen = decider or AmountDecider()
    world.runtime.risk = chosen
    world.app.state.risk = chosen
    return chosen


def in_db(world: World, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        async with world.runtime.unit_of_work.begin() as session:
            return await action(session)

    result: T = world.client.portal.call(run)
    return result


def decisions(world: World, reference: str | None = None) -> list[RiskDecision]:
    async def read(session: AsyncSession) -> list[RiskDecision]:
        statement = (
            select(RiskDecision)
            .where(RiskDecision.tenant_id == world.tenant_id)
            .order_by(RiskDecision.created_at, RiskDecision.id)
        )
        if reference is not None:
            statement = statement.where(RiskDecision.reference == reference)
        return list((await session.execute(statement)).scalars())

    return in_db(world, read)


def case(world: World, reference: str) -> RiskCase | None:
    async def read(session: AsyncSession) -> RiskCase | None:
        statement = select(RiskCase).where(
            RiskCase.tenant_id == world.tenant_id, RiskCase.reference == reference
        )
        return (await session.execute(statement)).scalar_one_or_none()

    return in_db(world, read)


def lapse(world: World, reference: str) -> None:
    """Make the case's hold due now."""

    async def write(session: AsyncSession) -> None:
        await session.execute(
            update(RiskCase).where(RiskCase.reference == reference).values(hold_expires_at=0)
        )

    in_db(world, write)


def expire(world: World) -> int:
    count: int = world.client.portal.call(functools.partial(expire_held, world.runtime))
    return count


def resolve(world: World, reference: str, *, approve: bool) -> None:
    world.client.portal.call(
        functools.partial(
            resolve_held,
            world.runtime,
            tenant_id=world.tenant_id,
            mode="test",
            reference=reference,
            approve=approve,
        )
    )


def respond(world: World, user: User, kind: str) -> None:
    """An automated response in force on `user` (as the responses helper would apply)."""
    from billfold.kit.ids import parse_id

    async def write(session: AsyncSession) -> None:
        session.add(
            RiskResponse(
                id=new_id(),
                tenant_id=world.tenant_id,
                mode="test",
                user_id=parse_id("usr", user.id),
                kind=kind,
                decision_id=None,
                state="active",
                detail="{}",
                applied_at=1,
                reversed_at=None,
                reversed_by=None,
            )
        )

    in_db(world, write)


def totp(world: World, user: User) -> str:
    clock = world.app.state.users_config.clock
    secret: str = world.client.post("/v1/me/mfa/totp", headers=user.auth).json()["secret"]
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    confirm = world.client.post(
        "/v1/me/mfa/totp/confirm", json={"code": code, "password": PASSWORD}, headers=user.auth
    )
    assert confirm.is_success, confirm.text
    clock.advance(seconds=30)
    return secret


def step_up(world: World, user: User, secret: str, **action: Any) -> str:
    clock = world.app.state.users_config.clock
    challenge = world.client.post(
        "/v1/me/step-up", json={**action, "method": "totp"}, headers=user.auth
    )
    assert challenge.status_code == 201, challenge.text
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    clock.advance(seconds=30)
    answer = world.client.post(
        f"/v1/me/step-up/{challenge.json()['id']}/answer",
        json={"totp_code": code},
        headers=user.auth,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["step_up_token"]
    return token


def decide_case(world: World, reference: str, state: str) -> None:
    """Mark the case decided as the case API does, without resolving the movement (a
    crash between the two)."""

    async def write(session: AsyncSession) -> None:
        await session.execute(
            update(RiskCase)
            .where(RiskCase.tenant_id == world.tenant_id, RiskCase.reference == reference)
            .values(state=state, resolved_at=1)
        )

    in_db(world, write)


def resume(world: World) -> int:
    from billfold.payments.flows.review import resume_decided

    count: int = world.client.portal.call(functools.partial(resume_decided, world.runtime))
    return count
