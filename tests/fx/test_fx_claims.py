"""A conversion interrupted after it claimed its quote (a crash, a ledger error, a
timeout), on both backends, with the fault injected in the ledger call: the same
conversion finishes on retry (with or without its Idempotency-Key), another conversion is
refused while the claim's lease runs, and recovery completes or gives back a claim past
its lease; concurrent conversions of one quote: exactly one wins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from billfold.fx import service
from billfold.fx.errors import FxQuoteAlreadyUsed
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.ledger.ledger import Ledger
from fx.test_fx_api import SAMPLE, Tenant, convert, net, quote, wallets
from fx.test_fx_conversion import NOW_NS, Books, books, unit_of_work  # noqa: F401 (fixtures)
from ledger.ledger_api_support import api, assert_problem, auth, open_account
from payments.payments_support import World, problem
from payments.risk_support import install
from payments.test_risk_paths import _fx_accounts, _net

LEASE_S = 60
"""`service.CLAIM_LEASE_S`, as documented."""


class LedgerDownError(ConnectionError):
    """The ledger's connection dropped mid-call (injected)."""


def break_submit_once(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, *, after_writing: bool = False
) -> None:
    """The next `submit` fails: before it writes anything (a lost connection), or
    `after_writing` (the legs landed, then the process died before marking the quote)."""
    real: Callable[..., Awaitable[Any]] = ledger.submit

    async def failing(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(ledger, "submit", real)
        if after_writing:
            await real(*args, **kwargs)
        raise LedgerDownError("injected")

    monkeypatch.setattr(ledger, "submit", failing)


def app_ledger(client: TestClient) -> Ledger:
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    return ledger


def status(client: TestClient, key: str, quote_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/fx/quotes/{quote_id}", headers=auth(key)).json()
    return found


def other_usd(client: TestClient, key: str, *, owner_ref: str = "u1") -> str:
    account: dict[str, Any] = open_account(
        client, key, ledger="USD", flags=["debits_must_not_exceed_credits"], owner_ref=owner_ref
    )
    return str(account["id"])


def test_a_retry_without_the_key_finishes_an_interrupted_conversion(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE) as client:
        eur, usd = wallets(client, tenant.writer)
        created = quote(client, tenant.writer)
        break_submit_once(app_ledger(client), monkeypatch)
        with pytest.raises(LedgerDownError):
            convert(client, tenant.writer, created["id"], eur, usd)
        claimed = status(client, tenant.reader, created["id"])
        assert (claimed["status"], claimed["used_at"]) == ("claimed", None)
        assert claimed["claimed_at"] is not None
        assert (claimed["sell_account_id"], claimed["buy_account_id"]) == (eur, usd)
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (100_00, 0)
        # Another conversion cannot take the claim while its lease runs.
        stranger = other_usd(client, tenant.writer)
        assert_problem(
            convert(client, tenant.writer, created["id"], eur, stranger),
            409,
            "fx_quote_already_used",
        )
        retried = convert(client, tenant.writer, created["id"], eur, usd)
        assert retried.status_code == 200, retried.text
        assert retried.json()["quote"]["status"] == "used"
        assert retried.json()["quote"]["claimed_at"] is None
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (50_00, 5497)
        assert_problem(
            convert(client, tenant.writer, created["id"], eur, usd), 409, "fx_quote_already_used"
        )
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (50_00, 5497)


def test_legs_that_landed_before_the_crash_are_completed_not_moved_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE) as client:
        eur, usd = wallets(client, tenant.writer)
        created = quote(client, tenant.writer)
        break_submit_once(app_ledger(client), monkeypatch, after_writing=True)
        with pytest.raises(LedgerDownError):
            convert(client, tenant.writer, created["id"], eur, usd)
        assert status(client, tenant.reader, created["id"])["status"] == "claimed"
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (50_00, 5497)
        # A conversion to another account is refused, and the quote shows who used it.
        stranger = other_usd(client, tenant.writer)
        assert_problem(
            convert(client, tenant.writer, created["id"], eur, stranger),
            409,
            "fx_quote_already_used",
        )
        used = status(client, tenant.reader, created["id"])
        assert (used["status"], used["buy_account_id"]) == ("used", usd)
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, stranger)) == (50_00, 0)


def test_a_claim_past_its_lease_returns_the_quote_to_others_within_its_ttl(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert service.CLAIM_LEASE_S == LEASE_S
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE, fx_quote_ttl_s=LEASE_S * 3) as client:
        clock = ManualClock()
        client.app.state.fx_clock = clock  # type: ignore[attr-defined]
        eur, usd = wallets(client, tenant.writer)
        created = quote(client, tenant.writer)
        break_submit_once(app_ledger(client), monkeypatch)
        with pytest.raises(LedgerDownError):
            convert(client, tenant.writer, created["id"], eur, usd)
        stranger = other_usd(client, tenant.writer)
        clock.advance(seconds=LEASE_S - 1)
        assert_problem(
            convert(client, tenant.writer, created["id"], eur, stranger),
            409,
            "fx_quote_already_used",
        )
        clock.advance(seconds=1)
        taken = convert(client, tenant.writer, created["id"], eur, stranger)
        assert taken.status_code == 200, taken.text
        assert taken.json()["quote"]["buy_account_id"] == stranger
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (50_00, 0)
        assert net(client, tenant.writer, stranger) == 5497


def test_a_claim_made_in_time_finishes_past_expiry_only_within_its_lease(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = Tenant(database_url)
    with api(database_url, fx_rates_file=SAMPLE, fx_quote_ttl_s=30) as client:
        clock = ManualClock()
        client.app.state.fx_clock = clock  # type: ignore[attr-defined]
        eur, usd = wallets(client, tenant.writer)
        late, stale = quote(client, tenant.writer), quote(client, tenant.writer)
        clock.advance(seconds=29)
        for created in (late, stale):
            break_submit_once(app_ledger(client), monkeypatch)
            with pytest.raises(LedgerDownError):
                convert(client, tenant.writer, created["id"], eur, usd)
        clock.advance(seconds=2)  # both quotes expired; the claims' lease runs
        finished = convert(client, tenant.writer, late["id"], eur, usd)
        assert finished.status_code == 200, finished.text
        clock.advance(seconds=LEASE_S)
        assert_problem(
            convert(client, tenant.writer, stale["id"], eur, usd), 409, "fx_quote_expired"
        )
        assert status(client, tenant.reader, stale["id"])["status"] == "expired"
        assert (net(client, tenant.writer, eur), net(client, tenant.writer, usd)) == (50_00, 5497)


@pytest.mark.anyio
async def test_recovery_completes_landed_claims_and_releases_the_others(
    books: Books,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await books.open("usd_2", "USD", owner="user-1")
    ttl_ns = 30 * NANOSECONDS_PER_SECOND
    landed = await books.quote("EUR", "USD", amount=10_00)
    lost = await books.quote("EUR", "USD", amount=20_00)
    at = NOW_NS + NANOSECONDS_PER_SECOND
    break_submit_once(books.ledger, monkeypatch, after_writing=True)
    with pytest.raises(LedgerDownError):
        await books.convert(landed, now_ns=at)
    break_submit_once(books.ledger, monkeypatch)
    with pytest.raises(LedgerDownError):
        await books.convert(lost, now_ns=at)
    lease_ns = LEASE_S * NANOSECONDS_PER_SECOND
    # Nothing is settled before the lease is over.
    await service.recover_claims(books.unit_of_work, books.ledger, now_ns=at + lease_ns - 1)
    async with books.unit_of_work.begin() as session:
        for row in (landed, lost):
            found = await service.get_quote(session, tenant_id=books.tenant_id, quote_id=row.id)
            assert (found.claimed_at, found.used_at) == (at, None)
    assert await service.recover_claims(books.unit_of_work, books.ledger, now_ns=at + lease_ns) >= 2
    async with books.unit_of_work.begin() as session:
        done = await service.get_quote(session, tenant_id=books.tenant_id, quote_id=landed.id)
        given_back = await service.get_quote(session, tenant_id=books.tenant_id, quote_id=lost.id)
        assert (done.used_at, done.claimed_at) == (at + lease_ns, None)
        assert (given_back.used_at, given_back.claimed_at, given_back.sell_account_id) == (
            None,
            None,
            None,
        )
    assert await books.balance("eur") == 90_00
    assert await books.balance("usd") == landed.buy_amount
    # The released quote converts again (its TTL is 30 s here: make it a fresh one's).
    async with books.unit_of_work.begin() as session:
        row = await service.get_quote(
            session, tenant_id=books.tenant_id, quote_id=lost.id, for_update=True
        )
        row.expires_at = at + lease_ns + ttl_ns
    await books.convert(lost, "eur", "usd_2", now_ns=at + lease_ns + 1)
    assert await books.balance("usd_2") == lost.buy_amount
    await books.assert_balanced()


@pytest.mark.anyio
async def test_concurrent_conversions_of_one_quote_exactly_one_wins(
    books: Books,  # noqa: F811
) -> None:
    for index in range(4):
        await books.open(f"usd_{index}", "USD", owner="user-1")
    quote_row = await books.quote("EUR", "USD", amount=10_00)
    outcomes = await asyncio.gather(
        *(books.convert(quote_row, "eur", f"usd_{index}") for index in range(4)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, service.Conversion)]
    assert len(won) == 1, outcomes
    assert all(isinstance(o, FxQuoteAlreadyUsed) for o in outcomes if o not in won), outcomes
    balances = [await books.balance(f"usd_{index}") for index in range(4)]
    assert sorted(balances) == [0, 0, 0, quote_row.buy_amount]
    assert won[0].quote.buy_account_id == books.accounts[f"usd_{balances.index(max(balances))}"]
    assert await books.balance("eur") == 90_00
    await books.assert_balanced()


def test_past_the_risk_decision_only_the_claiming_conversion_finishes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with World(database_url, fees=False, fx_rates_file=SAMPLE) as world:
        install(world)
        eur, usd = _fx_accounts(world)
        stranger = other_usd(world.client, world.key, owner_ref="fxu")
        created = world.client.post(
            "/v1/fx/quotes",
            json={"sell_currency": "EUR", "buy_currency": "USD", "sell_amount": "1000"},
            headers=world.api,
        ).json()

        def convert_to(buy: str) -> Any:
            body = {"quote_id": created["id"], "sell_account_id": eur, "buy_account_id": buy}
            return world.client.post("/v1/fx/conversions", json=body, headers=world.api)

        break_submit_once(app_ledger(world.client), monkeypatch)
        with pytest.raises(LedgerDownError):
            convert_to(usd)
        problem(convert_to(stranger), 409, "fx_quote_already_used")
        finished = convert_to(usd)
        assert finished.status_code == 200, finished.text
        assert finished.json()["state"] == "succeeded"
        assert (_net(world, eur), _net(world, usd)) == ((100_000 - 1_000, 0), (1_099, 0))
        assert _net(world, stranger) == (0, 0)


@pytest.mark.anyio
async def test_the_recovery_loops_settle_a_claim_a_crash_left(
    books: Books,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`running_recovery` (the embedded worker's and `billfold worker`'s) settles claims
    past their lease on the payments loop's interval: without it a claim waited for the
    quote's next use."""
    from billfold.flows import recovery_loops

    async def nothing_to_resume(payments: object, *, older_than_s: float) -> None:
        return None

    monkeypatch.setattr(recovery_loops, "resume_interrupted", nothing_to_resume)
    landed = await books.quote("EUR", "USD", amount=10_00)
    break_submit_once(books.ledger, monkeypatch, after_writing=True)
    with pytest.raises(LedgerDownError):
        # Claimed two minutes ago by the system clock the loop reads: past its lease.
        await books.convert(landed, now_ns=time.time_ns() - 2 * LEASE_S * NANOSECONDS_PER_SECOND)

    async def used_at() -> int | None:
        async with books.unit_of_work.begin() as session:
            row = await service.get_quote(session, tenant_id=books.tenant_id, quote_id=landed.id)
            return row.used_at

    assert await used_at() is None
    async with recovery_loops.running_recovery(
        unit_of_work=books.unit_of_work,
        ledger=books.ledger,
        payments=lambda: None,  # type: ignore[arg-type, return-value]
        resolver=lambda: None,
        payments_interval_s=0.05,
        risk_cases_interval_s=3600,
    ):
        for _ in range(200):
            if await used_at() is not None:
                break
            await asyncio.sleep(0.05)
    assert await used_at() is not None
    assert await books.balance("usd") == landed.buy_amount
    await books.assert_balanced()
