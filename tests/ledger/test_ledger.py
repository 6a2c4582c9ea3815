"""The ledger's behaviours, one by one, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from billfold.kit.clock import ManualClock
from billfold.kit.settings import Settings
from billfold.ledger.errors import AccountHasPendingBalance, AccountNotFound, BatchTooLarge
from billfold.ledger.ledger import Ledger
from billfold.ledger.state_machine import expiry_id
from billfold.ledger.types import (
    AMOUNT_MAX,
    AccountFlags,
    AccountStatus,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    TransferFlags,
)
from cli_support import Ran, billfold
from conftest import open_ledger

pytestmark = pytest.mark.anyio
Status = CreateTransferStatus


async def _accounts(ledger: Ledger, tenant_id: uuid.UUID, *flags: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in flags]
    results = await ledger.create_accounts(
        [
            NewAccount(id=i, tenant_id=tenant_id, ledger="USD", code=1, flags=f)
            for i, f in zip(ids, flags, strict=True)
        ]
    )
    assert [r.status.value for r in results] == ["ok"] * len(flags)
    return ids


def _transfer(
    tenant_id: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int | None, **fields: object
) -> NewTransfer:
    return NewTransfer(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger="USD",
        code=1,
        **fields,  # type: ignore[arg-type]
    )


async def test_amounts_are_exact_up_to_2_pow_127_minus_1(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    source, target = await _accounts(ledger, tenant, 0, 0)
    results = await ledger.create_transfers([_transfer(tenant, source, target, AMOUNT_MAX)])
    assert results[0].status is Status.OK
    assert results[0].amount == AMOUNT_MAX
    results = await ledger.create_transfers(
        [_transfer(tenant, source, target, 1), _transfer(tenant, source, target, AMOUNT_MAX + 1)]
    )
    assert [r.status for r in results] == [
        Status.OVERFLOWS_DEBITS_POSTED,
        Status.AMOUNT_EXCEEDS_MAXIMUM,
    ]
    debit, credit = await ledger.lookup_accounts(tenant_id=tenant, ids=[source, target])
    assert debit.debits_posted == AMOUNT_MAX
    assert credit.credits_posted == AMOUNT_MAX
    assert credit.debits_posted == 0


async def test_resubmitting_a_transfer_never_moves_money_twice(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    source, target = await _accounts(ledger, tenant, 0, 0)
    transfer = _transfer(tenant, source, target, 25)
    first = await ledger.submit([transfer])
    again = await asyncio.gather(*(ledger.submit([transfer]) for _ in range(5)))
    assert first[0].status is Status.OK
    assert {r[0].status for r in again} == {Status.EXISTS}
    assert {r[0].timestamp for r in again} == {first[0].timestamp}
    changed = NewTransfer(
        **{**{k: getattr(transfer, k) for k in NewTransfer.__slots__}, "amount": 26}
    )
    assert (await ledger.submit([changed]))[0].status is Status.EXISTS_WITH_DIFFERENT_FIELDS
    credit = (await ledger.lookup_accounts(tenant_id=tenant, ids=[target]))[0]
    assert credit.credits_posted == 25


async def test_a_resubmission_is_judged_by_its_shape_before_its_id(ledger: Ledger) -> None:
    """The documented order, shape then id: a transfer under a recorded id that could never
    be recorded is refused for what is wrong with it, not as `exists_with_different_fields`."""
    tenant = uuid.uuid4()
    source, target = await _accounts(ledger, tenant, 0, 0)
    transfer = _transfer(tenant, source, target, 25)
    assert (await ledger.create_transfers([transfer]))[0].status is Status.OK
    malformed = [
        replace(transfer, amount=-1),
        replace(transfer, user_data="x" * 129),
        replace(transfer, credit_account_id=source),
        replace(transfer, code=0),
    ]
    results = await ledger.create_transfers([*malformed, replace(transfer, amount=26), transfer])
    assert [r.status for r in results] == [
        Status.AMOUNT_MUST_NOT_BE_NEGATIVE,
        Status.USER_DATA_TOO_LONG,
        Status.ACCOUNTS_MUST_BE_DIFFERENT,
        Status.CODE_MUST_NOT_BE_ZERO,
        Status.EXISTS_WITH_DIFFERENT_FIELDS,
        Status.EXISTS,
    ]
    [credit] = await ledger.lookup_accounts(tenant_id=tenant, ids=[target])
    assert credit.credits_posted == 25


async def test_a_linked_chain_that_fails_in_the_middle_changes_nothing(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, wallet, merchant = await _accounts(
        ledger, tenant, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, 0
    )
    await ledger.create_transfers([_transfer(tenant, bank, wallet, 100)])
    chain = [
        _transfer(tenant, wallet, merchant, 60, flags=TransferFlags.LINKED),
        _transfer(tenant, wallet, merchant, 60, flags=TransferFlags.LINKED),
        _transfer(tenant, bank, merchant, 1),
    ]
    results = await ledger.create_transfers([*chain, _transfer(tenant, bank, wallet, 5)])
    assert [r.status for r in results] == [
        Status.LINKED_EVENT_FAILED,
        Status.EXCEEDS_CREDITS,
        Status.LINKED_EVENT_FAILED,
        Status.OK,
    ]
    assert not await ledger.lookup_transfers(tenant_id=tenant, ids=[t.id for t in chain])
    wallet_account, merchant_account = await ledger.lookup_accounts(
        tenant_id=tenant, ids=[wallet, merchant]
    )
    assert wallet_account.credits_posted == 105
    assert wallet_account.debits_posted == 0
    assert merchant_account.credits_posted == 0
    open_chain = await ledger.create_transfers(
        [_transfer(tenant, bank, wallet, 1, flags=TransferFlags.LINKED)]
    )
    assert open_chain[0].status is Status.LINKED_EVENT_CHAIN_OPEN


async def test_pending_transfers_post_partially_void_and_resolve_once(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, wallet = await _accounts(ledger, tenant, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    await ledger.create_transfers([_transfer(tenant, bank, wallet, 100)])
    hold = _transfer(tenant, wallet, bank, 70, flags=TransferFlags.PENDING)
    second = _transfer(tenant, wallet, bank, 40, flags=TransferFlags.PENDING)
    assert [r.status for r in await ledger.create_transfers([hold, second])] == [
        Status.OK,
        Status.EXCEEDS_CREDITS,
    ]
    post = NewTransfer(
        id=uuid.uuid4(),
        tenant_id=tenant,
        flags=TransferFlags.POST_PENDING,
        pending_id=hold.id,
        amount=50,
    )
    void = NewTransfer(
        id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.VOID_PENDING, pending_id=hold.id
    )
    results = await ledger.create_transfers([post, void])
    assert [r.status for r in results] == [Status.OK, Status.PENDING_TRANSFER_ALREADY_POSTED]
    account = (await ledger.lookup_accounts(tenant_id=tenant, ids=[wallet]))[0]
    assert (account.debits_pending, account.debits_posted, account.credits_posted) == (0, 50, 100)
    too_much = NewTransfer(
        id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.POST_PENDING, pending_id=uuid.uuid4()
    )
    assert (await ledger.create_transfers([too_much]))[
        0
    ].status is Status.PENDING_TRANSFER_NOT_FOUND


async def test_balancing_debit_moves_at_most_what_is_available(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, wallet = await _accounts(ledger, tenant, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    await ledger.create_transfers([_transfer(tenant, bank, wallet, 30)])
    sweep = _transfer(tenant, wallet, bank, 1_000, flags=TransferFlags.BALANCING_DEBIT)
    results = await ledger.create_transfers(
        [sweep, _transfer(tenant, wallet, bank, None, flags=TransferFlags.BALANCING_DEBIT)]
    )
    assert [(r.status, r.amount) for r in results] == [
        (Status.OK, 30),
        (Status.EXCEEDS_CREDITS, None),
    ]
    assert (await ledger.create_transfers([sweep]))[0].status is Status.EXISTS


async def test_frozen_accounts_refuse_transfers_but_holds_can_be_released(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, wallet = await _accounts(ledger, tenant, 0, 0)
    hold = _transfer(tenant, wallet, bank, 10, flags=TransferFlags.PENDING)
    await ledger.create_transfers([hold])
    await ledger.set_account_status(
        tenant_id=tenant, account_id=wallet, status=AccountStatus.FROZEN
    )
    post = NewTransfer(
        id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.POST_PENDING, pending_id=hold.id
    )
    void = NewTransfer(
        id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.VOID_PENDING, pending_id=hold.id
    )
    results = await ledger.create_transfers([_transfer(tenant, bank, wallet, 1), post])
    assert [r.status for r in results] == [Status.ACCOUNT_FROZEN, Status.ACCOUNT_FROZEN]
    hold_again = _transfer(tenant, bank, wallet, 3, flags=TransferFlags.PENDING)
    await ledger.set_account_status(
        tenant_id=tenant, account_id=wallet, status=AccountStatus.ACTIVE
    )
    await ledger.create_transfers([hold_again])
    with pytest.raises(AccountHasPendingBalance):
        await ledger.set_account_status(
            tenant_id=tenant, account_id=wallet, status=AccountStatus.CLOSED
        )
    await ledger.set_account_status(
        tenant_id=tenant, account_id=wallet, status=AccountStatus.FROZEN
    )
    assert (await ledger.create_transfers([void]))[0].status is Status.OK
    with pytest.raises(AccountNotFound):
        await ledger.set_account_status(
            tenant_id=uuid.uuid4(), account_id=wallet, status=AccountStatus.ACTIVE
        )


async def test_a_transfer_code_below_1_is_refused_and_fails_no_other_request(
    ledger: Ledger,
) -> None:
    """`code` is 1-65535: a negative one was recorded on SQLite and, past a PostgreSQL
    INTEGER, failed the writer's whole batch, so another caller's good transfer with it."""
    tenant = uuid.uuid4()
    source, target = await _accounts(ledger, tenant, 0, 0)
    good = _transfer(tenant, source, target, 1)
    negative = [replace(_transfer(tenant, source, target, 1), code=c) for c in (-1, -(2**40))]
    results = await asyncio.gather(ledger.submit([good]), *(ledger.submit([t]) for t in negative))
    assert [r.status for [r] in results] == [Status.OK] + [Status.CODE_MUST_NOT_BE_ZERO] * 2
    assert await ledger.lookup_transfers(tenant_id=tenant, ids=[t.id for t in negative]) == []
    [credit] = await ledger.lookup_accounts(tenant_id=tenant, ids=[target])
    assert credit.credits_posted == 1


async def test_a_request_the_database_refuses_fails_alone(database_url: str) -> None:
    """PostgreSQL cannot store U+0000 in text, which the state machine lets through: the
    writer's whole transaction failed, and with it every caller batched with that one. The
    batch is tried again one request at a time, so only the refused one fails (SQLite
    stores the character, so there all three are recorded)."""
    ledger = await open_ledger(database_url, ledger_batch_window_ms=50)  # one batch of three
    try:
        tenant = uuid.uuid4()
        source, target = await _accounts(ledger, tenant, 0, 0)
        first, second = _transfer(tenant, source, target, 1), _transfer(tenant, source, target, 2)
        refused = _transfer(tenant, source, target, 4, user_data="a\x00b")
        written_before = ledger.writer.batches_written
        results = await asyncio.gather(
            ledger.submit([first]),
            ledger.submit([refused]),
            ledger.submit([second]),
            return_exceptions=True,
        )
        [credit] = await ledger.lookup_accounts(tenant_id=tenant, ids=[target])
    finally:
        await ledger.close()
    first_result, refused_result, second_result = results
    assert isinstance(first_result, list) and isinstance(second_result, list), results
    assert [first_result[0].status, second_result[0].status] == [Status.OK, Status.OK]
    if database_url.startswith("postgresql"):
        assert isinstance(refused_result, Exception), refused_result
        assert credit.credits_posted == 3
        assert ledger.writer.batches_written - written_before == 2  # the two, alone
    else:
        assert isinstance(refused_result, list) and refused_result[0].status is Status.OK
        assert credit.credits_posted == 7


async def test_tenants_never_see_or_touch_each_other(ledger: Ledger) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    mine = await _accounts(ledger, tenant, 0, 0)
    theirs = await _accounts(ledger, other, 0)
    transfer = _transfer(tenant, mine[0], mine[1], 5)
    await ledger.create_transfers([transfer])
    assert await ledger.lookup_accounts(tenant_id=other, ids=mine) == []
    assert await ledger.lookup_transfers(tenant_id=other, ids=[transfer.id]) == []
    steal = _transfer(other, mine[0], theirs[0], 5)
    assert (await ledger.create_transfers([steal]))[0].status is Status.ACCOUNT_NOT_FOUND
    with pytest.raises(AccountNotFound):
        await ledger.account_transfers(tenant_id=other, account_id=mine[0], limit=10)


async def test_batches_are_bounded(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    with pytest.raises(BatchTooLarge):
        await ledger.create_transfers([_transfer(tenant, uuid.uuid4(), uuid.uuid4(), 1)] * 8191)
    with pytest.raises(BatchTooLarge):
        await ledger.submit([_transfer(tenant, uuid.uuid4(), uuid.uuid4(), 1)] * 8191)


async def test_account_transfers_page_in_time_order(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    a, b, c = await _accounts(ledger, tenant, 0, 0, 0)
    transfers = [
        _transfer(tenant, debit, credit, 1)
        for _ in range(3)
        for debit, credit in ((a, b), (c, a), (b, c))
    ]
    await ledger.create_transfers(transfers)
    seen: list[uuid.UUID] = []
    cursor = None
    for _ in range(10):
        page = await ledger.account_transfers(
            tenant_id=tenant, account_id=a, limit=4, cursor=cursor
        )
        seen.extend(t.id for t in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    touching_a = [t.id for t in transfers if a in (t.debit_account_id, t.credit_account_id)]
    assert seen == touching_a
    newest = await ledger.account_transfers(
        tenant_id=tenant, account_id=a, limit=1, descending=True
    )
    assert newest.items[0].id == touching_a[-1]


async def test_balance_as_of_a_timestamp_for_history_accounts(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, wallet = await _accounts(ledger, tenant, 0, AccountFlags.HISTORY)
    results = await ledger.create_transfers(
        [_transfer(tenant, bank, wallet, 10), _transfer(tenant, bank, wallet, 5)]
    )
    first, second = (r.timestamp for r in results)
    assert first is not None and second is not None
    before = await ledger.balance_as_of(tenant_id=tenant, account_id=wallet, timestamp=first - 1)
    middle = await ledger.balance_as_of(tenant_id=tenant, account_id=wallet, timestamp=second - 1)
    latest = await ledger.balance_as_of(tenant_id=tenant, account_id=wallet, timestamp=second)
    assert before is None
    assert middle is not None and middle.credits_posted == 10
    assert latest is not None and latest.credits_posted == 15
    history = await ledger.balance_history(tenant_id=tenant, account_id=wallet, limit=10)
    assert [r.credits_posted for r in history.items] == [10, 15]
    with pytest.raises(AccountNotFound):
        await ledger.balance_as_of(tenant_id=tenant, account_id=bank, timestamp=second)


async def test_concurrent_requests_share_database_transactions(ledger: Ledger) -> None:
    tenant = uuid.uuid4()
    bank, merchant = await _accounts(ledger, tenant, 0, 0)
    batches_before = ledger.writer.batches_written
    results = await asyncio.gather(
        *(ledger.submit([_transfer(tenant, bank, merchant, 1)]) for _ in range(200))
    )
    assert all(r[0].status is Status.OK for r in results)
    assert ledger.writer.batches_written - batches_before < 200
    assert (await ledger.lookup_accounts(tenant_id=tenant, ids=[merchant]))[0].credits_posted == 200


@pytest.fixture
async def clocked_ledger(isolated_database_url: str) -> AsyncIterator[tuple[Ledger, ManualClock]]:
    clock = ManualClock(start_ns=time.time_ns())
    ledger = Ledger.from_settings(Settings(database_url=isolated_database_url), clock=clock)
    await ledger.open()
    try:
        yield ledger, clock
    finally:
        await ledger.close()


async def test_pending_transfers_expire_and_the_expiry_is_recorded(
    clocked_ledger: tuple[Ledger, ManualClock],
) -> None:
    ledger, clock = clocked_ledger
    tenant = uuid.uuid4()
    bank, wallet = await _accounts(ledger, tenant, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    await ledger.create_transfers([_transfer(tenant, bank, wallet, 100)])
    short = _transfer(tenant, wallet, bank, 30, flags=TransferFlags.PENDING, timeout_s=10)
    late = _transfer(tenant, wallet, bank, 20, flags=TransferFlags.PENDING, timeout_s=60)
    await ledger.create_transfers([short, late])
    clock.advance(seconds=30)
    post_late_hold = NewTransfer(
        id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.POST_PENDING, pending_id=short.id
    )
    # Past its timeout but before the sweep: already refused.
    assert (await ledger.create_transfers([post_late_hold]))[
        0
    ].status is Status.PENDING_TRANSFER_EXPIRED
    overdue = (await ledger.verify(grace_s=0)).problems[0]
    assert (overdue.kind, overdue.subject) == ("pending_overdue", f"txf_{short.id.hex}")
    expired = await ledger.expire_pending()
    assert [t.pending_id for t in expired] == [short.id]
    assert expired[0].flags == TransferFlags.VOID_PENDING | TransferFlags.EXPIRY
    assert await ledger.lookup_transfers(tenant_id=tenant, ids=[expired[0].id]) == expired
    account = (await ledger.lookup_accounts(tenant_id=tenant, ids=[wallet]))[0]
    assert account.debits_pending == 20
    assert await ledger.expire_pending() == []
    assert (await ledger.verify(grace_s=0)).ok


async def test_a_transfer_squatting_an_expiry_id_does_not_stop_the_sweep(
    clocked_ledger: tuple[Ledger, ManualClock],
) -> None:
    """An expiry's id is derived from its pending transfer's, which anyone can do: a
    tenant that used it for a transfer of its own made recording the expiry break the
    unique id, which failed the whole sweep, and so every tenant's expiries, for ever."""
    ledger, clock = clocked_ledger
    squatter, victim = uuid.uuid4(), uuid.uuid4()
    own_debit, own_credit = await _accounts(ledger, squatter, 0, 0)
    debit, credit = await _accounts(ledger, victim, 0, 0)
    held = _transfer(victim, debit, credit, 5, flags=TransferFlags.PENDING, timeout_s=1)
    own = _transfer(squatter, own_debit, own_credit, 7, flags=TransferFlags.PENDING, timeout_s=1)
    squat = NewTransfer(
        id=expiry_id(own.id),
        tenant_id=squatter,
        debit_account_id=own_debit,
        credit_account_id=own_credit,
        amount=1,
        ledger="USD",
        code=1,
    )
    results = await ledger.create_transfers([held, own, squat])
    assert [r.status for r in results] == [Status.OK] * 3
    clock.advance(seconds=5)
    expired = await ledger.expire_pending()
    assert sorted(t.pending_id.int for t in expired if t.pending_id) == sorted(
        [held.id.int, own.id.int]
    )
    assert squat.id not in {t.id for t in expired}
    for tenant, account in ((victim, debit), (squatter, own_debit)):
        [after] = await ledger.lookup_accounts(tenant_id=tenant, ids=[account])
        assert after.debits_pending == 0
    assert await ledger.expire_pending() == []
    assert (await ledger.verify(grace_s=0)).ok


async def test_expiry_is_exact_to_the_nanosecond_and_verify_allows_the_grace_period(
    clocked_ledger: tuple[Ledger, ManualClock],
) -> None:
    """A hold expires at its timestamp plus its timeout: a post recorded one nanosecond
    before is taken, one recorded at it is refused, the sweep voids it from that moment;
    verify reports a hold only once it is open *more than* the grace period past it."""
    ledger, clock = clocked_ledger
    tenant = uuid.uuid4()
    payer, payee = await _accounts(ledger, tenant, 0, 0)
    holds = [
        _transfer(tenant, payer, payee, 10, flags=TransferFlags.PENDING, timeout_s=10)
        for _ in range(3)
    ]
    results = await ledger.create_transfers(holds)
    expires_at = [r.timestamp + 10 * 10**9 for r in results if r.timestamp is not None]

    def post(hold: NewTransfer) -> NewTransfer:
        return NewTransfer(
            id=uuid.uuid4(), tenant_id=tenant, flags=TransferFlags.POST_PENDING, pending_id=hold.id
        )

    clock.advance(nanoseconds=expires_at[0] - 1 - clock.now_ns())
    [taken] = await ledger.create_transfers([post(holds[0])])
    assert (taken.status, taken.timestamp) == (Status.OK, expires_at[0] - 1)
    assert await ledger.expire_pending() == []
    clock.advance(nanoseconds=expires_at[1] - clock.now_ns())
    [refused] = await ledger.create_transfers([post(holds[1])])
    assert refused.status is Status.PENDING_TRANSFER_EXPIRED
    [expiry] = await ledger.expire_pending()
    assert (expiry.pending_id, expiry.timestamp) == (holds[1].id, expires_at[1])
    clock.advance(nanoseconds=expires_at[2] + 5 * 10**9 - clock.now_ns())
    assert (await ledger.verify(grace_s=5)).ok
    clock.advance(nanoseconds=1)
    [overdue] = (await ledger.verify(grace_s=5)).problems
    assert (overdue.kind, overdue.subject) == ("pending_overdue", f"txf_{holds[2].id.hex}")


async def _execute(database_url: str, statement: str) -> None:
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            connection.execute(statement)
            connection.commit()
        finally:
            connection.close()
        return
    pg = await asyncpg.connect(database_url)
    try:
        await pg.execute(statement)
    finally:
        await pg.close()


async def test_the_database_refuses_to_change_a_transfer(isolated_database_url: str) -> None:
    ledger = await open_ledger(isolated_database_url)
    try:
        tenant = uuid.uuid4()
        source, target = await _accounts(ledger, tenant, 0, 0)
        await ledger.create_transfers([_transfer(tenant, source, target, 7)])
    finally:
        await ledger.close()
    for statement in (
        "UPDATE ledger_transfers SET amount = amount",
        "DELETE FROM ledger_transfers",
    ):
        with pytest.raises((sqlite3.DatabaseError, asyncpg.PostgresError), match="immutable"):
            await _execute(isolated_database_url, statement)


async def test_verify_reports_a_tampered_balance_and_the_command_exits_non_zero(
    isolated_database_url: str,
) -> None:
    ledger = await open_ledger(isolated_database_url)
    try:
        tenant = uuid.uuid4()
        source, target = await _accounts(ledger, tenant, 0, 0)
        await ledger.create_transfers([_transfer(tenant, source, target, 7)])
        assert (await ledger.verify(grace_s=60)).ok
    finally:
        await ledger.close()
    environment = {"BILLFOLD_DATABASE_URL": isolated_database_url}
    passing = await _run_verify(environment)
    assert passing.returncode == 0, passing.stdout
    # Give every account the same credits: the books no longer add up.
    sqlite = isolated_database_url.startswith("sqlite")
    nine = f"'{9:039d}'" if sqlite else "9"
    await _execute(isolated_database_url, f"UPDATE ledger_accounts SET credits_posted = {nine}")
    failing = await _run_verify(environment)
    assert failing.returncode == 1
    assert "balance_mismatch" in failing.stdout
    assert "unbalanced" in failing.stdout
    # The subjects are the ids an operator looks up through the API, not raw UUIDs.
    assert f"acc_{target.hex}" in failing.stdout
    assert str(target) not in failing.stdout


async def _run_verify(environment: dict[str, str]) -> Ran:
    """`billfold ledger verify`, on a thread: the command runs its own event loop."""
    return await asyncio.to_thread(billfold, "ledger", "verify", environment=environment)


async def test_a_second_process_writing_is_seen_by_the_first(isolated_database_url: str) -> None:
    """Each Ledger keeps the accounts of its last batch; any other write must void that."""
    first = await open_ledger(isolated_database_url)
    second = await open_ledger(isolated_database_url)
    try:
        tenant = uuid.uuid4()
        bank, wallet = await _accounts(
            first, tenant, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        )
        await first.submit([_transfer(tenant, bank, wallet, 10)])
        await second.submit([_transfer(tenant, wallet, bank, 10)])
        # `first` still holds wallet with 10 available; the database says 0.
        overdraw = await first.submit([_transfer(tenant, wallet, bank, 10)])
        assert overdraw[0].status is Status.EXCEEDS_CREDITS
        await first.submit([_transfer(tenant, bank, wallet, 5)])
        await second.set_account_status(
            tenant_id=tenant, account_id=wallet, status=AccountStatus.FROZEN
        )
        frozen = await first.submit([_transfer(tenant, bank, wallet, 1)])
        assert frozen[0].status is Status.ACCOUNT_FROZEN
        assert (await first.verify(grace_s=60)).ok
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_looks_transfers_up_by_index_however_new_the_table(
    isolated_database_url: str,
) -> None:
    """A new ledger's tables have no statistics until the first autoanalyze. asyncpg
    prepares a statement once per connection, and PostgreSQL keeps a generic plan after
    five runs: made while the table was empty, the lookup of a batch's transfer ids stayed
    a sequential scan as the table grew (O(table) per batch). The ledger's statements walk
    indexes whatever the statistics say."""
    ledger = await open_ledger(isolated_database_url, database_pool_size=1)
    try:
        tenant = uuid.uuid4()
        async with ledger.repository.read() as reader:
            for _ in range(8):  # a batch's ids each time, while the table is empty
                assert await reader.transfers_by_id([uuid.uuid4() for _ in range(100)]) == []
            connection = reader._connection  # type: ignore[attr-defined]
            scans = await connection.fetchrow(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                " WHERE relname = 'ledger_transfers'"
            )
        assert (scans["seq_scan"], scans["idx_scan"] > 0) == (0, True)
        source, target = await _accounts(ledger, tenant, 0, 0)
        transfers = [_transfer(tenant, source, target, 1) for _ in range(50)]
        await ledger.create_transfers(transfers)
        found = await ledger.lookup_transfers(tenant_id=tenant, ids=[t.id for t in transfers])
        assert sorted(t.id for t in found) == sorted(t.id for t in transfers)
    finally:
        await ledger.close()
