"""Property test: random sequences of account creations, transfers (pending, post, void,
partial posts, linked chains that fail in the middle, balancing, limit flags, retries with
the same and with different fields), freezes, closings and expiries, applied to the real
ledger on each backend and to the plain model in `ledger_model`; results, every balance and
every `history` account's balance history must agree after every step."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from billfold.kit.clock import ManualClock
from billfold.kit.settings import Settings
from billfold.ledger.errors import AccountClosed, AccountHasPendingBalance
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import BATCH_SIZE_MAX, AccountStatus, NewAccount, NewTransfer
from ledger.ledger_model import AMOUNT_MAX, HISTORY, LedgerModel

LEDGERS = ["USD", "EUR"]
BOUNDARY_AMOUNTS = [AMOUNT_MAX, AMOUNT_MAX - 1, AMOUNT_MAX // 2 + 1, AMOUNT_MAX + 1, -1, 0]
AMOUNTS = st.integers(0, 19).flatmap(
    lambda choice: st.sampled_from(BOUNDARY_AMOUNTS) if choice == 0 else st.integers(1, 500)
)
# Weighted: plain, pending, post, void, linked (plain and pending), balancing, and a few
# invalid combinations and the reserved expiry flag.
TRANSFER_FLAGS = st.sampled_from(
    [0] * 8 + [2] * 3 + [4] * 3 + [8] * 2 + [1] * 3 + [3, 5, 9] + [16, 32, 48, 17] + [6, 12, 20, 64]
)
ACCOUNT_FLAGS = st.sampled_from([0, 0, 0, 1, 1, 2, 4, 5, 6, 3, 8])
LEDGER_CHOICES = st.sampled_from(["USD"] * 16 + ["EUR"] * 3 + ["usd"])
# Below 1 too: a negative code was recorded, and one past a PostgreSQL INTEGER failed the
# writer's whole batch.
CODE_CHOICES = st.sampled_from([1] * 16 + [2, 2, 0, -1, -(2**40)])
ZERO_ID = uuid.UUID(int=0)
STATUSES = st.sampled_from(
    [AccountStatus.ACTIVE] * 2 + [AccountStatus.FROZEN, AccountStatus.CLOSED]
)


class LedgerComparison(RuleBasedStateMachine):
    """Drives a real `Ledger` and `LedgerModel` side by side for one tenant."""

    ledger: Ledger
    loop: asyncio.AbstractEventLoop
    clock: ManualClock

    accounts = Bundle("accounts")
    transfers = Bundle("transfers")

    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.tenant_id = uuid.uuid4()
        self.requests: dict[uuid.UUID, NewTransfer] = {}

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    @initialize(target=accounts, flags=st.lists(ACCOUNT_FLAGS, min_size=3, max_size=3))
    def open_accounts(self, flags: list[int]) -> Any:
        ids = [uuid.uuid4() for _ in flags]
        news = [
            NewAccount(id=i, tenant_id=self.tenant_id, ledger="USD", code=1, flags=f)
            for i, f in zip(ids, flags, strict=True)
        ]
        self._create_accounts(news)
        return multiple(*ids)

    def _create_accounts(self, news: list[NewAccount]) -> None:
        results = self.run(self.ledger.create_accounts(news))
        expected = [self.model.create_account(new) for new in news]
        assert [r.status.value for r in results] == expected

    @rule(
        target=accounts,
        ledger=st.sampled_from(["USD", "USD", "USD", "EUR"]),
        flags=ACCOUNT_FLAGS,
        code=st.sampled_from([1, 1, 1, 1, 2, 0, 70_000]),
    )
    def create_account(self, ledger: str, flags: int, code: int) -> uuid.UUID:
        account_id = uuid.uuid4()
        self._create_accounts(
            [
                NewAccount(
                    id=account_id, tenant_id=self.tenant_id, ledger=ledger, code=code, flags=flags
                )
            ]
        )
        return account_id

    @rule(account_id=accounts, flags=ACCOUNT_FLAGS)
    def recreate_account(self, account_id: uuid.UUID, flags: int) -> None:
        """Same id again: `exists` when identical, a difference otherwise."""
        known = self.model.accounts.get(account_id)
        ledger = known.ledger if known else "USD"
        self._create_accounts(
            [
                NewAccount(
                    id=account_id, tenant_id=self.tenant_id, ledger=ledger, code=1, flags=flags
                )
            ]
        )

    @rule(account_id=accounts, status=STATUSES)
    def change_status(self, account_id: uuid.UUID, status: AccountStatus) -> None:
        """Freeze, unfreeze or close; closing needs both pending balances to be zero."""
        known = self.model.accounts.get(account_id)
        if known is None:
            return
        change = self.ledger.set_account_status(
            tenant_id=self.tenant_id, account_id=account_id, status=status
        )
        if known.status == "closed" and status is not AccountStatus.CLOSED:
            with pytest.raises(AccountClosed):  # closed for good: nothing reopens it
                self.run(change)
            return
        if status is AccountStatus.CLOSED and (known.debits_pending or known.credits_pending):
            with pytest.raises(AccountHasPendingBalance):
                self.run(change)
            return
        self.run(change)
        known.status = status.value

    @rule(data=st.data(), size=st.integers(min_value=1, max_value=6), via_writer=st.booleans())
    def create_transfers(self, data: st.DataObject, size: int, via_writer: bool) -> None:
        batch = [self._draw_transfer(data) for _ in range(size)]
        self._apply([batch], via_writer=via_writer)

    @rule(data=st.data(), sizes=st.lists(st.integers(1, 3), min_size=2, max_size=3))
    def concurrent_requests(self, data: st.DataObject, sizes: list[int]) -> None:
        """Requests submitted together share one database transaction in the writer."""
        requests = [[self._draw_transfer(data) for _ in range(size)] for size in sizes]
        self._apply(requests, via_writer=True)

    @rule(seconds=st.sampled_from([1, 5, 30, 120]))
    def time_passes_and_expiry_runs(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)
        self.run(self.ledger.expire_pending())
        self.model.expire(self.clock.now_ns())

    def _apply(self, requests: list[list[NewTransfer]], *, via_writer: bool) -> None:
        clock_before = self.run(_clock(self.ledger))
        if via_writer:

            async def submit_all() -> list[Any]:
                return list(await asyncio.gather(*(self.ledger.submit(r) for r in requests)))

            all_results = self.run(submit_all())
        else:
            all_results = [self.run(self.ledger.create_transfers(r)) for r in requests]
        now_ns = self.clock.now_ns()
        self.model.last_timestamp = clock_before
        for request, results in zip(requests, all_results, strict=True):
            expected = self.model.create_transfers(request, now_ns)
            actual = [(r.status.value, r.amount) for r in results]
            assert actual == expected, f"{request}"
            for status, _ in actual:
                event(status)
            for transfer in request:
                self.requests.setdefault(transfer.id, transfer)

    def _draw_transfer(self, data: st.DataObject) -> NewTransfer:
        account_ids = list(self.model.accounts) or [uuid.uuid4()]
        reuse = data.draw(st.integers(0, 12))
        recorded = [t.request for t in self.model.transfers.values()]
        if reuse <= 1 and (recorded if reuse else self.requests):
            # A retry of a recorded (or any earlier) request: the same request, or the same
            # id with the amount changed.
            earlier = recorded if reuse else list(self.requests.values())
            previous = data.draw(st.sampled_from(earlier))
            if data.draw(st.booleans()):
                return previous
            return NewTransfer(**{**_fields(previous), "amount": data.draw(AMOUNTS)})
        flags = data.draw(TRANSFER_FLAGS)
        pending_ids = [i for i, s in self.model.pending.items() if s == "pending"]
        if flags & (4 | 8) and not pending_ids and data.draw(st.integers(0, 3)):
            flags = 2  # nothing to resolve yet: hold money instead, so resolutions follow
        pending_id = None
        if flags & (4 | 8) or data.draw(st.integers(0, 30)) == 0:
            # A zero id is TigerBeetle's "none": on a regular transfer it is no pending id.
            choices = [*pending_ids * 4, *list(self.model.pending), uuid.uuid4(), ZERO_ID]
            pending_id = data.draw(st.sampled_from(choices))
        resolve = bool(flags & (4 | 8))
        data.draw(st.randoms()).shuffle(account_ids)
        # On a post or void, no account and code, a zero one ("the pending transfer's"),
        # or now and then a given one (which must be the pending transfer's).
        resolved = st.sampled_from([None] * 6 + [ZERO_ID, *account_ids[:2]])
        return NewTransfer(
            id=uuid.uuid4(),
            tenant_id=self.tenant_id,
            debit_account_id=data.draw(resolved)
            if resolve
            else data.draw(st.sampled_from(account_ids)),
            credit_account_id=data.draw(resolved)
            if resolve
            else data.draw(st.sampled_from(account_ids[1:] or account_ids)),
            amount=data.draw(st.one_of(st.none(), AMOUNTS))
            if resolve or flags & 48
            else data.draw(AMOUNTS),
            ledger=None if resolve else data.draw(LEDGER_CHOICES),
            code=data.draw(st.sampled_from([None] * 6 + [0, 1, 2]))
            if resolve
            else data.draw(CODE_CHOICES),
            flags=flags,
            pending_id=pending_id,
            timeout_s=data.draw(st.sampled_from([0, 0, 1, 10, 60])) if flags & 2 else 0,
        )

    @invariant()
    def balances_agree(self) -> None:
        ids = list(self.model.accounts)
        if not ids:
            return
        stored = {
            a.id: a
            for a in self.run(self.ledger.lookup_accounts(tenant_id=self.tenant_id, ids=ids))
        }
        for account_id, expected in self.model.accounts.items():
            actual = stored[account_id]
            assert (
                actual.debits_pending,
                actual.debits_posted,
                actual.credits_pending,
                actual.credits_posted,
                actual.status.value,
            ) == (
                expected.debits_pending,
                expected.debits_posted,
                expected.credits_pending,
                expected.credits_posted,
                expected.status,
            ), account_id

    @invariant()
    def balance_history_follows_every_transfer(self) -> None:
        """An account with `history` has one record per transfer touching it, in strictly
        increasing time, each at its transfer's timestamp; the last holds its balances."""
        for account_id, expected in self.model.accounts.items():
            if not expected.flags & HISTORY:
                continue
            records = self.run(
                self.ledger.balance_history(
                    tenant_id=self.tenant_id, account_id=account_id, limit=BATCH_SIZE_MAX
                )
            ).items
            transfers = self.run(
                self.ledger.account_transfers(
                    tenant_id=self.tenant_id, account_id=account_id, limit=BATCH_SIZE_MAX
                )
            ).items
            assert [(r.transfer_id, r.timestamp) for r in records] == [
                (t.id, t.timestamp) for t in transfers
            ]
            last = records[-1][3:] if records else (0, 0, 0, 0)
            assert last == (
                expected.debits_pending,
                expected.debits_posted,
                expected.credits_pending,
                expected.credits_posted,
            ), account_id


async def _clock(ledger: Ledger) -> int:
    async with ledger.repository.read() as reader:
        return await reader.last_timestamp()


def _fields(transfer: NewTransfer) -> dict[str, Any]:
    return {name: getattr(transfer, name) for name in NewTransfer.__slots__}


@pytest.mark.slow
def test_ledger_agrees_with_the_model(isolated_database_url: str) -> None:
    loop = asyncio.new_event_loop()
    clock = ManualClock(start_ns=time.time_ns())
    ledger = Ledger.from_settings(
        Settings(database_url=isolated_database_url, ledger_batch_window_ms=1), clock=clock
    )
    loop.run_until_complete(ledger.open())
    try:
        LedgerComparison.ledger = ledger
        LedgerComparison.loop = loop
        LedgerComparison.clock = clock
        run_state_machine_as_test(
            LedgerComparison,
            settings=settings(
                max_examples=50,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
        report = loop.run_until_complete(ledger.verify(grace_s=10**9))
        assert report.ok, report.problems
    finally:
        loop.run_until_complete(ledger.close())
        loop.close()
