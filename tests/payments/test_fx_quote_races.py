"""Two users of one FX quote, each having checked it before the other writes a leg: a
conversion the risk engine allows against one it holds for review, and a conversion
against a cross-currency P2P send. The quote converts once, the other party gets
`409 fx_quote_already_used`, money moves once, and the quote stays `used` with the legs
that stand. Both parties go through the real app; they are put in order by pausing each
one where it submits the quote's legs to the ledger. Also: a conversion the ledger refuses
gives its claim back; Idempotency-Key replays move money once; a cross-currency send held
for review keeps its quote used whichever way the review goes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.fx.service import conversion_transfer_ids
from billfold.ledger.types import NewTransfer
from billfold.risk.types import Action, Decision, Movement
from ledger.ledger_api_support import balances, open_account, post_transfer, transfer
from payments.payments_support import World, fee_of, problem
from payments.risk_support import REVIEW, AmountDecider, install, resolve
from payments.test_cross_currency import _fund_eur, _quote, _world

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


class TakingTurns(AmountDecider):
    """Answers each decision with the next of `turns` (the movements carry one quote's
    amount, so the amount cannot tell them apart)."""

    def __init__(self, turns: Sequence[Action]) -> None:
        super().__init__()
        self.turns = list(turns)

    async def decide(self, session: AsyncSession, movement: Movement) -> Decision:
        self.actions = {movement.amount: self.turns.pop(0)}
        return await super().decide(session, movement)


def _in_turn(
    world: World, quote_id: str, first: Call, second: Call
) -> tuple[httpx.Response, httpx.Response]:
    """Run `first` until it submits the quote's legs (its checks done, nothing written yet),
    then `second` until it does the same or answers, then `first` to its answer, then the
    rest of `second`."""
    ledger = world.ledger
    real = ledger.submit
    legs = set(conversion_transfer_ids(uuid.UUID(hex=quote_id.removeprefix("fxq_"))))

    async def race() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            second_reached = asyncio.Event()
            second_tasks: list[asyncio.Task[httpx.Response]] = []

            async def submit(transfers: list[NewTransfer]) -> Any:
                if legs & {sent.id for sent in transfers}:
                    if not second_tasks:  # the first party: the second one catches up
                        second_tasks.append(asyncio.create_task(second(api)))
                        reached = asyncio.create_task(second_reached.wait())
                        await asyncio.wait(
                            [reached, second_tasks[0]], return_when="FIRST_COMPLETED"
                        )
                        reached.cancel()
                    elif not second_reached.is_set():  # the second: the first finishes first
                        second_reached.set()
                        await asyncio.wait([first_task])
                return await real(transfers)

            ledger.submit = submit  # type: ignore[method-assign]
            try:
                first_task = asyncio.create_task(first(api))
                answer = await first_task
                if not second_tasks:
                    second_tasks.append(asyncio.create_task(second(api)))
                return answer, await second_tasks[0]
            finally:
                del ledger.submit

    answers: tuple[httpx.Response, httpx.Response] = world.client.portal.call(race)
    return answers


def _accounts(world: World, owner: str) -> tuple[str, str]:
    """One owner's EUR account (funded with 1,000.00) and USD account."""
    flags = ["debits_must_not_exceed_credits"]
    eur = open_account(world.client, world.key, ledger="EUR", flags=flags, owner_ref=owner)
    usd = open_account(world.client, world.key, ledger="USD", flags=flags, owner_ref=owner)
    bank = open_account(world.client, world.key, ledger="EUR")
    post_transfer(world.client, world.key, transfer(bank["id"], eur["id"], "100000", ledger="EUR"))
    return eur["id"], usd["id"]


def _converting(world: World, quote_id: str, sell: str, buy: str) -> Call:
    async def call(api: httpx.AsyncClient) -> httpx.Response:
        body = {"quote_id": quote_id, "sell_account_id": sell, "buy_account_id": buy}
        return await api.post("/v1/fx/conversions", json=body, headers=world.api)

    return call


def _posted_and_pending(world: World, account: str) -> tuple[int, int]:
    found = balances(world.client, world.key, account)
    posted = int(found["credits_posted"]) - int(found["debits_posted"])
    pending = int(found["credits_pending"]) - int(found["debits_pending"])
    return posted, pending


def _quote_state(world: World, quote_id: str) -> str:
    response = world.client.get(f"/v1/fx/quotes/{quote_id}", headers=world.api)
    assert response.status_code == 200, response.text
    state: str = response.json()["status"]
    return state


def test_an_allowed_and_a_held_conversion_of_one_quote_convert_once(database_url: str) -> None:
    with _world(database_url) as world:
        install(world, TakingTurns([Action.ALLOW, Action.REVIEW]))
        eur, usd = _accounts(world, "fx-ann")
        other_eur, other_usd = _accounts(world, "fx-bob")
        quote = _quote(world, buy_amount=1_000)
        allowed, held = _in_turn(
            world,
            quote["id"],
            _converting(world, quote["id"], eur, usd),
            _converting(world, quote["id"], other_eur, other_usd),
        )
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["state"] == "succeeded"
        problem(held, 409, "fx_quote_already_used")
        sold = int(quote["sell_amount"])
        assert _posted_and_pending(world, eur) == (100_000 - sold, 0)
        assert _posted_and_pending(world, usd) == (1_000, 0)
        assert _posted_and_pending(world, other_eur) == (100_000, 0)
        assert _posted_and_pending(world, other_usd) == (0, 0)
        assert _quote_state(world, quote["id"]) == "used"


def test_a_conversion_and_a_p2p_send_of_one_quote_convert_once(database_url: str) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        eur, usd = _accounts(world, "fx-cat")
        quote = _quote(world, buy_amount=1_000 + fee_of(1_000))

        async def send(api: httpx.AsyncClient) -> httpx.Response:
            body = {"recipient": bob.handle, "amount": 1_000, "currency": "USD"}
            return await api.post(
                "/v1/me/p2p", json={**body, "quote_id": quote["id"]}, headers=ann.auth
            )

        converted, sent = _in_turn(
            world, quote["id"], _converting(world, quote["id"], eur, usd), send
        )
        assert converted.status_code == 200, converted.text
        problem(sent, 409, "fx_quote_already_used")
        assert _posted_and_pending(world, usd) == (1_000 + fee_of(1_000), 0)
        assert world.wallet(ann, "EUR")["available"] == 5_000
        assert world.wallet(bob, "USD")["available"] == 0
        assert _quote_state(world, quote["id"]) == "used"


def test_a_refused_conversion_gives_its_claim_on_the_quote_back(database_url: str) -> None:
    with _world(database_url) as world:
        flags = ["debits_must_not_exceed_credits"]
        empty = open_account(world.client, world.key, ledger="EUR", flags=flags, owner_ref="o")
        usd = open_account(world.client, world.key, ledger="USD", flags=flags, owner_ref="o")
        eur, _ = _accounts(world, "o")
        quote = _quote(world, buy_amount=1_000)
        refused = world.client.post(
            "/v1/fx/conversions",
            json={
                "quote_id": quote["id"],
                "sell_account_id": empty["id"],
                "buy_account_id": usd["id"],
            },
            headers=world.api,
        )
        problem(refused, 422, "fx_insufficient_funds")
        assert _quote_state(world, quote["id"]) == "open"
        again = world.client.post(
            "/v1/fx/conversions",
            json={"quote_id": quote["id"], "sell_account_id": eur, "buy_account_id": usd["id"]},
            headers=world.api,
        )
        assert again.status_code == 200, again.text
        assert _posted_and_pending(world, usd["id"]) == (1_000, 0)


def test_replays_of_a_cross_currency_send_and_a_conversion_move_money_once(
    database_url: str,
) -> None:
    with _world(database_url) as world:
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 5_000)
        eur, usd = _accounts(world, "fx-dan")
        sent_quote = _quote(world, buy_amount=1_000 + fee_of(1_000))
        body = {"recipient": bob.handle, "amount": 1_000, "currency": "USD"}
        send = {**body, "quote_id": sent_quote["id"]}
        headers = {**ann.auth, "Idempotency-Key": uuid.uuid4().hex}
        first, again = (world.client.post("/v1/me/p2p", json=send, headers=headers) for _ in "12")
        assert first.status_code == again.status_code == 201, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert world.wallet(bob, "USD")["available"] == 1_000
        assert world.wallet(ann, "EUR")["available"] == 5_000 - int(sent_quote["sell_amount"])
        quote = _quote(world, buy_amount=1_000)
        convert = {"quote_id": quote["id"], "sell_account_id": eur, "buy_account_id": usd}
        headers = {**world.api, "Idempotency-Key": uuid.uuid4().hex}
        answers = [world.client.post("/v1/fx/conversions", json=convert, headers=headers)]
        answers.append(world.client.post("/v1/fx/conversions", json=convert, headers=headers))
        assert [answer.status_code for answer in answers] == [200, 200], answers[1].text
        assert answers[1].json() == answers[0].json()
        assert _posted_and_pending(world, usd) == (1_000, 0)


@pytest.mark.parametrize("approve", [True, False])
def test_a_held_cross_currency_send_keeps_its_quote_whatever_the_review_says(
    database_url: str, approve: bool
) -> None:
    with _world(database_url) as world:
        install(world)
        ann, bob = world.user(), world.user()
        _fund_eur(world, ann, 15_000)
        eur_before = world.wallet(ann, "EUR")["available"]
        quote = _quote(world, buy_amount=REVIEW + fee_of(REVIEW))
        body = {"recipient": bob.handle, "amount": REVIEW, "currency": "USD"}
        held = world.client.post(
            "/v1/me/p2p", json={**body, "quote_id": quote["id"]}, headers=ann.auth
        )
        assert held.status_code == 202 and held.json()["state"] == "in_review", held.text
        assert _quote_state(world, quote["id"]) == "used"
        # The conversion is posted when the payment is held: only the payment waits.
        sold = int(quote["sell_amount"])
        assert world.wallet(ann, "EUR")["available"] == eur_before - sold
        assert world.wallet(ann, "USD") == {
            "available": 0,
            "pending": 0,
            "held": REVIEW + fee_of(REVIEW),
        }
        resolve(world, held.json()["id"], approve=approve)
        assert _quote_state(world, quote["id"]) == "used"
        assert world.wallet(ann, "EUR")["available"] == eur_before - sold
        paid = REVIEW if approve else 0
        assert world.wallet(bob, "USD")["available"] == paid
        # Rejected, the money comes back in the payment's currency, as after a void.
        kept = 0 if approve else REVIEW + fee_of(REVIEW)
        assert world.wallet(ann, "USD") == {"available": kept, "pending": 0, "held": 0}
        again = world.client.post(
            "/v1/me/p2p", json={**body, "quote_id": quote["id"]}, headers=ann.auth
        )
        problem(again, 409, "fx_quote_already_used")


def test_a_held_conversion_whose_legs_may_have_landed_keeps_its_quote_and_review(
    database_url: str,
) -> None:
    """An error after the ledger may have applied the pending legs (here: they applied,
    then the answer was lost) is no refusal. The quote used to be given back and the review
    closed, leaving the pending legs holding the seller's money with nothing to settle
    them; now both stay, and the analyst's rejection releases the money."""
    with _world(database_url) as world:
        install(world, TakingTurns([Action.REVIEW]))
        eur, usd = _accounts(world, "fx-dan")
        quote = _quote(world, buy_amount=1_000)
        ledger = world.ledger
        real = ledger.submit

        async def lost_answer(transfers: list[NewTransfer]) -> Any:
            await real(transfers)
            raise ConnectionError("the ledger's answer was lost")

        ledger.submit = lost_answer  # type: ignore[method-assign]
        body = {"quote_id": quote["id"], "sell_account_id": eur, "buy_account_id": usd}
        try:
            with pytest.raises(ConnectionError):  # the test client raises the server's error
                world.client.post("/v1/fx/conversions", json=body, headers=world.api)
        finally:
            del ledger.submit
        sold = int(quote["sell_amount"])
        assert _posted_and_pending(world, eur) == (100_000, -sold)
        assert _quote_state(world, quote["id"]) == "used"
        resolve(world, f"cnv_{quote['id'].removeprefix('fxq_')}", approve=False)
        assert _posted_and_pending(world, eur) == (100_000, 0)
        assert _posted_and_pending(world, usd) == (0, 0)
