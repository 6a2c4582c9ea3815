"""Four-eyes limit increases take effect: one operator asks, another approves, and the
payment the limit refused now passes (only in the window and currency approved). A refused
request changes nothing; one that could not apply is refused when it is asked for (and, if
it no longer applies when approved, fails), storing nothing; executing an approval twice
adds nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import delete as delete_rows
from sqlalchemy import func, select

from billfold.flows.approvals import LimitIncreaseExecutor
from billfold.identity.operators.executors import ApprovedAction, ExecutionOutcome
from billfold.identity.operators.models import ApprovalRequest
from billfold.identity.operators.payloads import canonical_payload
from billfold.identity.operators.permissions import ActionType, Role
from billfold.identity.security_events import SecurityEvent, SecurityEventType
from billfold.identity.users.models import EndUser
from billfold.kit.ids import parse_id
from billfold.wallets.models import LimitOverride
from identity.operators.operators_support import SignedIn, operator
from payments.payments_support import PASSWORD, User, World, problem

# Tier 1 (the default) in USD: 100_000 per transfer, 250_000 a day, 1_000_000 a month.
PER_TRANSACTION = 100_000


def _increase(
    subject: str, amount: int, *, limit: str = "per_transaction", asset: str = "USD"
) -> dict[str, Any]:
    return {
        "action_type": "limit_increase",
        "reason": "Verified source of funds for a house deposit",
        "payload": {"subject_id": subject, "limit": limit, "asset": asset, "amount": amount},
    }


def _desk(world: World, database_url: str) -> tuple[SignedIn, SignedIn]:
    """A support operator who may ask, a compliance officer who may approve."""
    support = operator(database_url, tenant_id=world.tenant_id, roles=[Role.SUPPORT])
    compliance = operator(database_url, tenant_id=world.tenant_id, roles=[Role.COMPLIANCE_OFFICER])
    return support, compliance


def _ask(world: World, who: SignedIn, body: dict[str, Any]) -> str:
    response = world.client.post("/v1/approvals", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return str(response.json()["id"])


def _decide(world: World, who: SignedIn, approval_id: str, verb: str) -> dict[str, Any]:
    response = world.client.post(
        f"/v1/approvals/{approval_id}/{verb}", json={"note": "checked"}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _send(world: World, sender: User, recipient: User, amount: int) -> Any:
    body = {"recipient": recipient.handle, "currency": "USD", "amount": amount}
    return world.client.post("/v1/me/p2p", json=body, headers=sender.auth)


def _limits(world: World, user: User, currency: str = "USD") -> dict[str, dict[str, Any]]:
    response = world.client.get(
        f"/v1/users/{user.id}/limits", params={"currency": currency}, headers=world.api
    )
    assert response.status_code == 200, response.text
    return {item["window"]: item for item in response.json()["limits"]}


def _override_count(world: World) -> int:
    async def count() -> int:
        async with world.runtime.unit_of_work.begin() as session:
            statement = select(func.count()).where(LimitOverride.tenant_id == world.tenant_id)
            return int((await session.execute(statement)).scalar_one())

    result: int = world.client.portal.call(count)
    return result


def test_an_approved_increase_lets_the_refused_payment_through(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 500_000)
        support, compliance = _desk(world, database_url)
        refused = _send(world, ann, bob, 150_000)
        assert problem(refused, 422, "limit_exceeded")["window"] == "per_transaction"

        approval_id = _ask(world, support, _increase(ann.id, 200_000))
        still = _send(world, ann, bob, 150_000)  # asked, not approved: nothing changes
        assert problem(still, 422, "limit_exceeded")["window"] == "per_transaction"
        assert _limits(world, ann)["per_transaction"]["source"] == "tier"

        decided = _decide(world, compliance, approval_id, "approve")
        assert decided["status"] == "executed", decided
        assert decided["result"] == {
            "subject_id": ann.id,
            "mode": "test",
            "limit": "per_transaction",
            "asset": "USD",
            "amount": "200000",
            "already_applied": False,
        }
        assert _send(world, ann, bob, 150_000).status_code == 201
        assert world.wallet(bob)["available"] == 150_000

        limits = _limits(world, ann)
        assert limits["per_transaction"]["limit"] == "200000"
        assert limits["per_transaction"]["tier_limit"] == str(PER_TRANSACTION)
        assert limits["per_transaction"]["source"] == "override"
        assert limits["per_transaction"]["override"]["approval_id"] == approval_id
        assert (limits["daily"]["source"], limits["daily"]["override"]) == ("tier", None)
        # Only the named window was raised: the daily 250_000 still binds.
        over_daily = _send(world, ann, bob, 150_000)
        assert problem(over_daily, 422, "limit_exceeded")["window"] == "daily"
        # And only for its holder and currency.
        carol = world.user()
        world.fund(carol, 200_000)
        other = _send(world, carol, bob, 150_000)
        assert problem(other, 422, "limit_exceeded")["window"] == "per_transaction"
        assert _limits(world, ann, "EUR")["per_transaction"]["source"] == "tier"
        world.assert_books()


def test_a_daily_increase_and_the_latest_approval_wins(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 600_000)
        support, compliance = _desk(world, database_url)
        for _ in range(2):
            assert _send(world, ann, bob, 100_000).status_code == 201
        refused = _send(world, ann, bob, 100_000)
        assert problem(refused, 422, "limit_exceeded")["window"] == "daily"

        first = _ask(world, support, _increase(ann.id, 400_000, limit="daily"))
        assert _decide(world, compliance, first, "approve")["status"] == "executed"
        assert _send(world, ann, bob, 100_000).status_code == 201
        # A later approval replaces it, even with a lower figure (never below the tier's).
        second = _ask(world, support, _increase(ann.id, 300_000, limit="daily"))
        assert _decide(world, compliance, second, "approve")["status"] == "executed"
        daily = _limits(world, ann)["daily"]
        assert (daily["limit"], daily["override"]["approval_id"]) == ("300000", second)
        assert problem(_send(world, ann, bob, 100_000), 422, "limit_exceeded")["used"] == "300000"
        third = _ask(world, support, _increase(ann.id, 1_000, limit="daily"))
        assert _decide(world, compliance, third, "approve")["status"] == "executed"
        daily = _limits(world, ann)["daily"]
        assert (daily["limit"], daily["source"]) == ("250000", "tier")
        assert daily["override"]["amount"] == "1000"
        world.assert_books()


def test_a_refused_increase_changes_nothing(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 200_000)
        support, compliance = _desk(world, database_url)
        approval_id = _ask(world, support, _increase(ann.id, 200_000))
        assert _decide(world, compliance, approval_id, "refuse")["status"] == "refused"
        refused = _send(world, ann, bob, 150_000)
        assert problem(refused, 422, "limit_exceeded")["window"] == "per_transaction"
        assert _override_count(world) == 0
        assert _limits(world, ann)["per_transaction"]["override"] is None
        # Nor can the requester approve their own request.
        own = _ask(world, support, _increase(ann.id, 200_000))
        response = world.client.post(f"/v1/approvals/{own}/approve", headers=support.headers)
        assert response.status_code == 403
        assert _override_count(world) == 0


def _unappliable(world: World, database_url: str) -> list[tuple[dict[str, Any], int, str]]:
    """Requests that could not apply, each with the status and code it is refused with."""
    ann = world.user()
    shop = world.merchant()
    with World(database_url) as elsewhere:  # another tenant's user
        outsider = elsewhere.user()
    return [
        (_increase(ann.id, 200_000, limit="daily_withdrawal"), 422, "unknown_limit"),
        (_increase(shop, 200_000), 422, "holder_has_no_limits"),
        (_increase(outsider.id, 200_000), 404, "holder_not_found"),
        (_increase("usr_" + "0" * 32, 200_000), 404, "holder_not_found"),
        (_increase(ann.id, 2**63), 422, "amount_out_of_range"),
        (_increase(ann.id, 200_000, asset="ZZZ"), 422, "unsupported_currency"),
    ]


def _requests_made(world: World) -> tuple[int, int]:
    """The tenant's approval requests, and its security events of a request made."""

    async def count() -> tuple[int, int]:
        async with world.runtime.unit_of_work.begin() as session:
            requests = select(func.count()).where(ApprovalRequest.tenant_id == world.tenant_id)
            events = select(func.count()).where(
                SecurityEvent.tenant_id == world.tenant_id,
                SecurityEvent.event_type == SecurityEventType.APPROVAL_REQUESTED.value,
            )
            return (
                int((await session.execute(requests)).scalar_one()),
                int((await session.execute(events)).scalar_one()),
            )

    result: tuple[int, int] = world.client.portal.call(count)
    return result


def test_an_increase_that_cannot_apply_is_refused_when_asked(database_url: str) -> None:
    """Refused before anyone is asked to approve it, with the code the executor would fail
    it with; nothing is stored: no request, no security event, no override."""
    with World(database_url, fees=False) as world:
        support, _ = _desk(world, database_url)
        for body, status, code in _unappliable(world, database_url):
            response = world.client.post("/v1/approvals", json=body, headers=support.headers)
            refused = problem(response, status, code)
            if code == "unknown_limit":
                assert refused["windows"] == ["per_transaction", "daily", "monthly"]
            if code == "amount_out_of_range":
                assert refused["amount_max"] == str(2**63 - 1)
            if code == "unsupported_currency":
                assert refused["currency"] == "ZZZ"
        assert _requests_made(world) == (0, 0)
        assert _override_count(world) == 0
        # The same operator's applicable request is made (and counted) as before.
        ann = world.user()
        _ask(world, support, _increase(ann.id, 200_000))
        assert _requests_made(world) == (1, 1)


def test_the_executor_checks_again_when_approved(database_url: str) -> None:
    """What was checked when the request was made may have changed by its approval: the
    executor fails one that cannot apply (the same codes as the request-time refusals),
    changing nothing."""
    with World(database_url, fees=False) as world:
        executor = LimitIncreaseExecutor()
        for body, _, code in _unappliable(world, database_url):
            action = _approved(world, canonical_payload(ActionType.LIMIT_INCREASE, body["payload"]))

            async def execute(action: ApprovedAction = action) -> ExecutionOutcome:
                async with world.runtime.unit_of_work.begin() as session:
                    return await executor.execute(session, action)

            outcome = world.client.portal.call(execute)
            assert (outcome.succeeded, dict(outcome.facts)) == (False, {"failure": code})
        assert _override_count(world) == 0

        # Over HTTP: the holder is there when asked, gone when approved.
        support, compliance = _desk(world, database_url)
        created = world.client.post(
            "/v1/users", json={"handle": "gone", "password": PASSWORD}, headers=world.api
        )
        assert created.status_code == 201, created.text
        approval_id = _ask(world, support, _increase(created.json()["id"], 200_000))
        _delete_user(world, created.json()["id"])
        decided = _decide(world, compliance, approval_id, "approve")
        assert (decided["status"], decided["result"]) == ("failed", {"failure": "holder_not_found"})
        assert _override_count(world) == 0


def _approved(world: World, payload: str) -> ApprovedAction:
    return ApprovedAction(
        approval_id=uuid.uuid4(),
        tenant_id=world.tenant_id,
        action_type=ActionType.LIMIT_INCREASE,
        payload=payload,
        requested_by=uuid.uuid4(),
        decided_by=uuid.uuid4(),
        decided_at=time.time_ns(),
    )


def _delete_user(world: World, user_id: str) -> None:
    """Remove a user who never signed in (nothing refers to it): a holder that vanished."""

    async def delete() -> None:
        async with world.runtime.unit_of_work.begin() as session:
            await session.execute(
                delete_rows(EndUser).where(EndUser.id == parse_id("usr", user_id))
            )

    world.client.portal.call(delete)


def test_executing_an_approval_again_adds_nothing(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann, bob = world.user(), world.user()
        world.fund(ann, 200_000)
        action = ApprovedAction(
            approval_id=uuid.uuid4(),
            tenant_id=world.tenant_id,
            action_type=ActionType.LIMIT_INCREASE,
            payload=(
                f'{{"amount":"200000","asset":"USD","limit":"per_transaction",'
                f'"subject_id":"{ann.id}"}}'
            ),
            requested_by=uuid.uuid4(),
            decided_by=uuid.uuid4(),
            decided_at=time.time_ns(),
        )
        executor = LimitIncreaseExecutor()

        async def execute() -> dict[str, Any]:
            async with world.runtime.unit_of_work.begin() as session:
                outcome = await executor.execute(session, action)
            assert outcome.succeeded
            return dict(outcome.facts)

        first = world.client.portal.call(execute)
        again = world.client.portal.call(execute)
        assert (first["already_applied"], again["already_applied"]) == (False, True)
        assert _override_count(world) == 1
        assert _send(world, ann, bob, 150_000).status_code == 201
        assert _limits(world, ann)["per_transaction"]["limit"] == "200000"

        async def rolled_back() -> None:
            # The effect lives in the decision's transaction: a rollback takes it away.
            other = ApprovedAction(**{**_fields(action), "approval_id": uuid.uuid4()})
            try:
                async with world.runtime.unit_of_work.begin() as session:
                    assert (await executor.execute(session, other)).succeeded
                    raise _AbandonedError
            except _AbandonedError:
                pass

        world.client.portal.call(rolled_back)
        assert _override_count(world) == 1
        world.assert_books()


class _AbandonedError(Exception):
    """Abandons a unit of work (it rolls back)."""


def _fields(action: ApprovedAction) -> dict[str, Any]:
    return {name: getattr(action, name) for name in ApprovedAction.__slots__}


def test_the_limits_route_answers_for_known_users_and_currencies_only(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        ann = world.user()
        tier = world.client.put(f"/v1/users/{ann.id}/kyc-tier", json={"tier": 3}, headers=world.api)
        assert tier.status_code == 200
        limits = _limits(world, ann, "JPY")  # exponent 0: the table's whole units
        assert [limits[w]["limit"] for w in ("per_transaction", "daily", "monthly")] == [
            "100000",
            "250000",
            "1000000",
        ]
        with World(database_url) as elsewhere:  # another tenant's user is not found here
            outsider = elsewhere.user()
        for user_id, currency, status, code in [
            (outsider.id, "USD", 404, "holder_not_found"),
            ("usr_" + "0" * 32, "USD", 404, "holder_not_found"),
            (ann.id, "ZZZ", 422, "unsupported_currency"),
        ]:
            response = world.client.get(
                f"/v1/users/{user_id}/limits", params={"currency": currency}, headers=world.api
            )
            problem(response, status, code)
