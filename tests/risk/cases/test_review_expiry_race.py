"""A held payment's review expiry and an analyst's approval are one race with one winner:
expiry (payments' recovery loop, ``expire_held``) claims the case before it voids the
hold, so an approval landing while the expiry is under way is refused (409
``case_not_open``) instead of leaving the case ``approved`` over a payment failed
``risk_review_expired``; the expired case always has its resolution and its
``risk.case.expired`` audit entry. Real payments, real ledger, both backends; the race
itself with concurrent tasks on PostgreSQL's real connections."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.models import AuditEntry
from billfold.identity.operators.permissions import Role
from billfold.kit.clock import ManualClock
from billfold.kit.ids import format_id
from billfold.payments.flows import review
from billfold.risk.cases import router as case_router
from billfold.risk.cases.models import RiskCaseResolution
from billfold.risk.models import RiskCase
from identity.operators.operators_support import operator
from payments.payments_support import User, World
from payments.risk_support import REVIEW, case, expire, in_db, install, lapse


def _held(world: World, ann: User, bob: User) -> str:
    sent = world.client.post(
        "/v1/me/p2p",
        json={"recipient": bob.handle, "amount": REVIEW, "currency": "USD"},
        headers=ann.auth,
    )
    assert sent.status_code == 202, sent.text
    payment_id: str = sent.json()["id"]
    return payment_id


def _books(world: World, reference: str) -> tuple[str | None, list[str]]:
    """The case's resolution state and its audit actions, oldest first."""
    stored = case(world, reference)
    assert stored is not None

    async def read(session: AsyncSession) -> tuple[str | None, list[str]]:
        resolution = await session.get(RiskCaseResolution, stored.id)
        actions = await session.execute(
            select(AuditEntry.action)
            .where(AuditEntry.target == format_id("rcs", stored.id))
            .order_by(AuditEntry.sequence)
        )
        return (None if resolution is None else resolution.state), list(actions.scalars())

    return in_db(world, read)


def _lapsing(world: World, monkeypatch: pytest.MonkeyPatch, references: list[str]) -> None:
    """Make the cases' holds end a moment from now and wait until they have, while the
    API's clock stays before that end (a node whose clock runs behind the worker's): to
    the analyst the hold is still in force, to the expiry it has lapsed, and only the
    claim on the case decides who wins."""
    monkeypatch.setattr(case_router, "_clock", ManualClock(start_ns=time.time_ns()))
    ends_ns = time.time_ns() + 200_000_000

    async def write(session: AsyncSession) -> None:
        await session.execute(
            update(RiskCase)
            .where(RiskCase.tenant_id == world.tenant_id, RiskCase.reference.in_(references))
            .values(hold_expires_at=ends_ns)
        )

    in_db(world, write)
    time.sleep(0.3)


def _case_id(world: World, reference: str) -> str:
    stored = case(world, reference)
    assert stored is not None
    return format_id("rcs", stored.id)


def test_an_approval_while_the_expiry_voids_the_hold_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval arrives exactly when the expiry has voided the hold and failed the
    payment: it must find the case expired already (before the fix it was still open, the
    approval won the case, and the payment stayed failed)."""
    with World(database_url, fees=False) as world:
        install(world)
        analyst = operator(database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        reference = _held(world, ann, bob)
        _lapsing(world, monkeypatch, [reference])
        voided, carry_on = threading.Event(), threading.Event()
        original: Callable[..., Awaitable[None]] = review._reject

        async def reject_then_wait(*args: Any, **kwargs: Any) -> None:
            await original(*args, **kwargs)
            voided.set()  # the hold is voided and the payment failed: the analyst acts now
            await anyio.to_thread.run_sync(carry_on.wait)

        monkeypatch.setattr(review, "_reject", reject_then_wait)
        expiring = world.client.portal.start_task_soon(review.expire_held, world.runtime)
        assert voided.wait(timeout=30)
        approved = world.client.post(
            f"/v1/risk/cases/{_case_id(world, reference)}/approve", headers=analyst.headers
        )
        carry_on.set()
        assert expiring.result(timeout=30) >= 1
        assert approved.status_code == 409, approved.text
        assert approved.json()["code"] == "case_not_open"
        stored = case(world, reference)
        assert stored is not None and stored.state == "expired" and stored.resolved_by is None
        done = world.payment(reference)
        assert (done["state"], done["failure_code"]) == ("failed", "risk_review_expired")
        assert _books(world, reference) == ("settled", ["risk.case.expired"])
        assert world.wallet(ann)["available"] == 20_000
        assert world.wallet(bob)["available"] == 0
        shown = world.client.get(
            f"/v1/risk/cases/{_case_id(world, reference)}", headers=analyst.headers
        ).json()
        assert shown["state"] == "expired"


def test_an_expiry_after_an_approval_leaves_the_case_alone(database_url: str) -> None:
    """The other order: the analyst's approval claimed the case, so the expiry that comes
    after (the hold's time having passed) changes nothing."""
    with World(database_url, fees=False) as world:
        install(world)
        analyst = operator(database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        ann, bob = world.user(), world.user()
        world.fund(ann, 20_000)
        reference = _held(world, ann, bob)
        approved = world.client.post(
            f"/v1/risk/cases/{_case_id(world, reference)}/approve", headers=analyst.headers
        )
        assert approved.status_code == 200, approved.text
        lapse(world, reference)
        expire(world)
        stored = case(world, reference)
        assert stored is not None and stored.state == "approved"
        assert world.payment(reference)["state"] == "succeeded"
        assert _books(world, reference) == ("settled", ["risk.case.approved"])
        assert world.wallet(bob)["available"] == REVIEW


RACES = 6


def test_approvals_racing_expiries_have_exactly_one_winner_each(
    backend: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent tasks on real PostgreSQL connections: each held payment's approval and
    the recovery loop's expiry run at once. Whoever wins, the case, the payment, the
    resolution and the audit log agree, and the loser changed nothing."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the ordering tests above cover it")
    with World(database_url, fees=False) as world:
        install(world)
        analyst = operator(database_url, tenant_id=world.tenant_id, roles=[Role.RISK_ANALYST])
        ann, bob = world.user(), world.user()
        world.fund(ann, REVIEW * RACES)
        references = [_held(world, ann, bob) for _ in range(RACES)]
        _lapsing(world, monkeypatch, references)
        paths = [f"/v1/risk/cases/{_case_id(world, r)}/approve" for r in references]

        async def race() -> list[int]:
            transport = httpx.ASGITransport(app=world.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

                async def approve(path: str) -> int:
                    answer = await client.post(path, headers=analyst.headers)
                    return answer.status_code

                # Half the approvals start before the first expiry, half between the two.
                early = [asyncio.ensure_future(approve(path)) for path in paths[: RACES // 2]]
                expiries = [asyncio.ensure_future(review.expire_held(world.runtime))]
                late = [asyncio.ensure_future(approve(path)) for path in paths[RACES // 2 :]]
                expiries.append(asyncio.ensure_future(review.expire_held(world.runtime)))
                answers = await asyncio.gather(*early, *late)
                await asyncio.gather(*expiries)
                return list(answers)

        statuses: list[int] = world.client.portal.call(race)
        for reference, status in zip(references, statuses, strict=True):
            stored = case(world, reference)
            assert stored is not None
            payment = world.payment(reference)
            resolution, actions = _books(world, reference)
            assert resolution == "settled"
            if status == 200:
                assert stored.state == "approved" and payment["state"] == "succeeded"
                assert actions == ["risk.case.approved"]
            else:
                assert status == 409
                assert stored.state == "expired" and payment["state"] == "failed"
                assert payment["failure_code"] == "risk_review_expired"
                assert actions == ["risk.case.expired"]
        wins = sum(status == 200 for status in statuses)
        assert world.wallet(bob)["available"] == REVIEW * wins
        assert world.wallet(ann)["available"] == REVIEW * (RACES - wins)


def test_a_case_whose_hold_could_not_be_placed_expires_with_its_audit_entry(
    database_url: str,
) -> None:
    """The held movement is refused by the ledger (no funds): nothing is held, and its
    case closes ``expired`` at once, with a settled resolution and ``risk.case.expired``
    in the audit log like any other expiry (it used to leave neither)."""
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 100)
        sent = world.client.post(
            "/v1/me/p2p",
            json={"recipient": bob.handle, "amount": REVIEW, "currency": "USD"},
            headers=ann.auth,
        )
        assert sent.status_code == 422, sent.text
        [stored] = _cases_of(world)
        assert stored.state == "expired" and stored.resolved_by is None
        assert _books(world, stored.reference) == ("settled", ["risk.case.expired"])
        assert world.wallet(ann)["available"] == 100


def _cases_of(world: World) -> list[RiskCase]:
    async def read(session: AsyncSession) -> list[RiskCase]:
        rows = await session.execute(select(RiskCase).where(RiskCase.tenant_id == world.tenant_id))
        return list(rows.scalars())

    return in_db(world, read)
