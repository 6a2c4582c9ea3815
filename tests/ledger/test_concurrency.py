"""Independent writers (each a `Ledger` with its own connections and batching writer) moving
money at once: nothing overdraws, nothing is lost or counted twice, and the books verify.

Every writer records each request and its results; a plain model then recomputes every
balance from the `ok` results alone, and the stored balances must equal it exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.util
import itertools
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import pytest

from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    BATCH_SIZE_MAX,
    Account,
    AccountFlags,
    Balances,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    TransferFlags,
    TransferResult,
)
from conftest import open_ledger

pytestmark = pytest.mark.anyio

Status = CreateTransferStatus

WRITERS = 8
CLIENT_TASKS_PER_WRITER = 3
TRANSFERS_PER_WRITER = 300
USER_ACCOUNTS = 20
FUNDING_PER_ACCOUNT = 1_000
AMOUNT_MAX = 1_200
"""More than an account starts with, so many transfers would overdraw."""
SHARED_PENDINGS = 16
SHARED_PENDING_AMOUNT = 50
SHARED_TRANSFERS = 16
SHARED_TRANSFER_AMOUNT = 7
POOL_SIZE = 3
RUN_SECONDS_MAX = 120
CLI_SECONDS_MAX = 60


class Kind(enum.Enum):
    SINGLES = "singles"
    PENDING = "pending"
    RESOLVE = "resolve"
    CHAIN = "chain"
    BULK = "bulk"
    SHARED_RESOLVE = "shared_resolve"
    SHARED_TRANSFER = "shared_transfer"


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: Kind
    request: Sequence[NewTransfer]
    results: Sequence[TransferResult]


@dataclasses.dataclass(frozen=True)
class Setup:
    tenant_id: uuid.UUID
    funding_id: uuid.UUID
    user_ids: list[uuid.UUID]
    funding_outcome: Outcome
    shared_pendings: list[NewTransfer]
    shared_transfers: list[NewTransfer]

    @property
    def account_ids(self) -> list[uuid.UUID]:
        return [self.funding_id, *self.user_ids]


# ----------------------------------------------------------------------------- the model


def expected_balances(outcomes: Iterable[Outcome]) -> dict[uuid.UUID, list[int]]:
    """(debits pending, debits posted, credits pending, credits posted) per account, from
    the transfers the ledger answered `ok` alone."""
    recorded: list[tuple[NewTransfer, int]] = []
    for outcome in outcomes:
        for transfer, result in zip(outcome.request, outcome.results, strict=True):
            if result.status is Status.OK:
                assert result.amount is not None
                recorded.append((transfer, result.amount))
    pendings = {t.id: (t, amount) for t, amount in recorded if t.flags & TransferFlags.PENDING}
    balances: dict[uuid.UUID, list[int]] = {}
    for transfer, amount in recorded:
        pending_delta, posted_delta = 0, amount
        if transfer.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            assert transfer.pending_id is not None
            pending, pending_amount = pendings.pop(transfer.pending_id)  # at most once
            posted = bool(transfer.flags & TransferFlags.POST_PENDING)
            pending_delta, posted_delta = -pending_amount, amount if posted else 0
            transfer = pending  # the accounts are the pending transfer's
        elif transfer.flags & TransferFlags.PENDING:
            pending_delta, posted_delta = amount, 0
        assert transfer.debit_account_id is not None
        assert transfer.credit_account_id is not None
        debit = balances.setdefault(transfer.debit_account_id, [0, 0, 0, 0])
        credit = balances.setdefault(transfer.credit_account_id, [0, 0, 0, 0])
        debit[0] += pending_delta
        debit[1] += posted_delta
        credit[2] += pending_delta
        credit[3] += posted_delta
    return balances


def stored_balances(account: Account) -> list[int]:
    return [
        account.debits_pending,
        account.debits_posted,
        account.credits_pending,
        account.credits_posted,
    ]


# ----------------------------------------------------------------------------- the writers


class Client:
    """One task of one writer: random requests until its share of transfers is sent."""

    def __init__(self, ledger: Ledger, setup: Setup, seed: int, outcomes: list[Outcome]) -> None:
        self.ledger = ledger
        self.setup = setup
        self.random = random.Random(seed)
        self.outcomes = outcomes
        self.open_pending: list[NewTransfer] = []

    def _transfer(
        self,
        debit_account_id: uuid.UUID,
        credit_account_id: uuid.UUID,
        amount: int,
        flags: int = 0,
    ) -> NewTransfer:
        return NewTransfer(
            id=uuid.uuid4(),
            tenant_id=self.setup.tenant_id,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=amount,
            ledger="USD",
            code=1,
            flags=flags,
        )

    def _random_transfer(self, flags: int = 0) -> NewTransfer:
        debit_account_id, credit_account_id = self.random.sample(self.setup.user_ids, 2)
        amount = self.random.randint(1, AMOUNT_MAX)
        return self._transfer(debit_account_id, credit_account_id, amount, flags)

    def _chain(self) -> list[NewTransfer]:
        """Money passed along A → B → C …: each later leg lives on the credit of the one
        before it, so the chain succeeds or fails as one, often on its first leg."""
        hops = self.random.sample(self.setup.user_ids, self.random.randint(3, 5))
        amount = self.random.randint(1, AMOUNT_MAX)
        legs = [
            self._transfer(debit, credit, amount, TransferFlags.LINKED)
            for debit, credit in itertools.pairwise(hops)
        ]
        return [*legs[:-1], dataclasses.replace(legs[-1], flags=TransferFlags.NONE)]

    def _resolve(self) -> NewTransfer:
        pending = self.open_pending.pop(self.random.randrange(len(self.open_pending)))
        assert pending.amount is not None
        roll = self.random.random()
        flags = TransferFlags.VOID_PENDING if roll < 0.4 else TransferFlags.POST_PENDING
        amount = self.random.randint(1, pending.amount) if roll > 0.7 else None
        return NewTransfer(
            id=uuid.uuid4(),
            tenant_id=self.setup.tenant_id,
            pending_id=pending.id,
            flags=flags,
            amount=amount,
        )

    def _request(self) -> tuple[Kind, list[NewTransfer]]:
        roll = self.random.random()
        if roll < 0.15 and self.open_pending:
            return Kind.RESOLVE, [self._resolve()]
        if roll < 0.3:
            return Kind.PENDING, [self._random_transfer(TransferFlags.PENDING)]
        if roll < 0.5:
            return Kind.CHAIN, self._chain()
        if roll < 0.6:
            return Kind.BULK, [self._random_transfer() for _ in range(20)]
        return Kind.SINGLES, [self._random_transfer() for _ in range(self.random.randint(1, 5))]

    async def run(self, transfers_to_send: int) -> None:
        sent = 0
        while sent < transfers_to_send:
            kind, request = self._request()
            if kind is Kind.BULK:  # its own transaction, past the writer's queue
                results = await self.ledger.create_transfers(request)
            else:
                results = await self.ledger.submit(request)
            self.outcomes.append(Outcome(kind, request, results))
            sent += len(request)
            for transfer, result in zip(request, results, strict=True):
                if transfer.flags & TransferFlags.PENDING and result.status is Status.OK:
                    self.open_pending.append(transfer)

    async def race_for_shared(self) -> None:
        """Every writer resolves every shared pending transfer and resubmits every shared
        transfer: exactly one may win each."""
        work: list[tuple[Kind, NewTransfer]] = [
            (Kind.SHARED_TRANSFER, transfer) for transfer in self.setup.shared_transfers
        ]
        for pending in self.setup.shared_pendings:
            flags = self.random.choice([TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING])
            resolve = NewTransfer(
                id=uuid.uuid4(), tenant_id=self.setup.tenant_id, pending_id=pending.id, flags=flags
            )
            work.append((Kind.SHARED_RESOLVE, resolve))
        self.random.shuffle(work)
        for kind, transfer in work:
            results = await self.ledger.submit([transfer])
            self.outcomes.append(Outcome(kind, [transfer], results))


async def run_writer(url: str, setup: Setup, seed: int, outcomes: list[Outcome]) -> None:
    ledger = await open_ledger(url, ledger_batch_window_ms=1, database_pool_size=POOL_SIZE)
    try:
        seeds = random.Random(seed)
        share = TRANSFERS_PER_WRITER // CLIENT_TASKS_PER_WRITER
        async with anyio.create_task_group() as group:
            for _ in range(CLIENT_TASKS_PER_WRITER):
                client = Client(ledger, setup, seeds.randrange(2**32), outcomes)
                group.start_soon(client.run, share)
            racer = Client(ledger, setup, seeds.randrange(2**32), outcomes)
            group.start_soon(racer.race_for_shared)
    finally:
        await ledger.close()


# ----------------------------------------------------------------------------- setup


def _new_transfer(
    setup_tenant: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int, flags: int = 0
) -> NewTransfer:
    return NewTransfer(
        id=uuid.uuid4(),
        tenant_id=setup_tenant,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger="USD",
        code=1,
        flags=flags,
    )


async def open_accounts(
    ledger: Ledger, *, users: int, funding_per_account: int, shared_pendings: int = 0
) -> Setup:
    """A funding account (no limit) and `users` accounts that must not overdraw, each
    funded; plus shared pending transfers from the funding account for writers to race on."""
    tenant_id = uuid.uuid4()
    funding_id = uuid.uuid4()
    user_ids = [uuid.uuid4() for _ in range(users)]
    limit = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    results = await ledger.create_accounts(
        [NewAccount(id=funding_id, tenant_id=tenant_id, ledger="USD", code=1)]
        + [
            NewAccount(id=user_id, tenant_id=tenant_id, ledger="USD", code=1, flags=limit)
            for user_id in user_ids
        ]
    )
    assert [result.status for result in results] == ["ok"] * (users + 1)
    fundings = [_new_transfer(tenant_id, funding_id, u, funding_per_account) for u in user_ids]
    pendings = [
        _new_transfer(
            tenant_id,
            funding_id,
            user_ids[index % users],
            SHARED_PENDING_AMOUNT,
            TransferFlags.PENDING,
        )
        for index in range(shared_pendings)
    ]
    request = [*fundings, *pendings]
    transfer_results = await ledger.create_transfers(request)
    assert [result.status for result in transfer_results] == ["ok"] * len(request)
    shared_transfers = [
        _new_transfer(tenant_id, funding_id, user_ids[index % users], SHARED_TRANSFER_AMOUNT)
        for index in range(SHARED_TRANSFERS)
    ]
    return Setup(
        tenant_id=tenant_id,
        funding_id=funding_id,
        user_ids=user_ids,
        funding_outcome=Outcome(Kind.BULK, request, transfer_results),
        shared_pendings=pendings,
        shared_transfers=shared_transfers,
    )


# ----------------------------------------------------------------------------- checks


async def _found(ledger: Ledger, tenant_id: uuid.UUID, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = list(ids)
    found: set[uuid.UUID] = set()
    for start in range(0, len(wanted), BATCH_SIZE_MAX):
        chunk = wanted[start : start + BATCH_SIZE_MAX]
        found.update(t.id for t in await ledger.lookup_transfers(tenant_id=tenant_id, ids=chunk))
    return found


def check_results(outcomes: Sequence[Outcome], setup: Setup) -> Counter[Status]:
    """Each result is one the scenario allows; chains all-or-nothing; one winner per race."""
    statuses: Counter[Status] = Counter()
    allowed = {
        Kind.SINGLES: {Status.OK, Status.EXCEEDS_CREDITS},
        Kind.BULK: {Status.OK, Status.EXCEEDS_CREDITS},
        Kind.PENDING: {Status.OK, Status.EXCEEDS_CREDITS},
        Kind.RESOLVE: {Status.OK},
        Kind.CHAIN: {Status.OK, Status.EXCEEDS_CREDITS, Status.LINKED_EVENT_FAILED},
        Kind.SHARED_TRANSFER: {Status.OK, Status.EXISTS},
        Kind.SHARED_RESOLVE: {
            Status.OK,
            Status.PENDING_TRANSFER_ALREADY_POSTED,
            Status.PENDING_TRANSFER_ALREADY_VOIDED,
        },
    }
    winners: Counter[uuid.UUID] = Counter()
    for outcome in outcomes:
        assert len(outcome.results) == len(outcome.request)
        for index, (transfer, result) in enumerate(
            zip(outcome.request, outcome.results, strict=True)
        ):
            assert (result.index, result.id) == (index, transfer.id)
            assert result.status in allowed[outcome.kind], (outcome.kind, result)
            statuses[result.status] += 1
        chain_statuses = {result.status for result in outcome.results}
        if outcome.kind is Kind.CHAIN and chain_statuses != {Status.OK}:
            assert Status.OK not in chain_statuses, outcome.results
            assert Status.EXCEEDS_CREDITS in chain_statuses, outcome.results
        if outcome.kind is Kind.SHARED_RESOLVE and outcome.results[0].status is Status.OK:
            assert outcome.request[0].pending_id is not None
            winners[outcome.request[0].pending_id] += 1
        if outcome.kind is Kind.SHARED_TRANSFER:
            result = outcome.results[0]
            assert result.amount == SHARED_TRANSFER_AMOUNT
            if result.status is Status.OK:
                winners[result.id] += 1
    shared_ids = [t.id for t in setup.shared_pendings] + [t.id for t in setup.shared_transfers]
    assert winners == Counter(shared_ids)  # each exactly once, whoever asked first
    return statuses


async def check_books(ledger: Ledger, setup: Setup, outcomes: Sequence[Outcome]) -> None:
    recorded = {
        result.id
        for outcome in outcomes
        for result in outcome.results
        if result.status in (Status.OK, Status.EXISTS)
    }
    refused = {
        result.id for outcome in outcomes for result in outcome.results if result.id not in recorded
    }
    found = await _found(ledger, setup.tenant_id, recorded | refused)
    assert not recorded - found, f"{len(recorded - found)} acknowledged transfers are missing"
    assert not refused & found, f"{len(refused & found)} refused transfers were recorded"

    accounts = await ledger.lookup_accounts(tenant_id=setup.tenant_id, ids=setup.account_ids)
    assert [a.id for a in accounts] == setup.account_ids
    expected = expected_balances(outcomes)
    for account in accounts:
        assert stored_balances(account) == expected.get(account.id, [0, 0, 0, 0]), account.id
    funding, *users = accounts
    for user in users:
        assert user.debits_pending + user.debits_posted <= user.credits_posted, user
        assert user.debits_pending >= 0
        assert user.credits_pending >= 0
    # Money only enters the users' accounts from the funding account, and is conserved.
    assert sum(user.balance_posted for user in users) == funding.debits_posted
    assert sum(a.debits_posted for a in accounts) == sum(a.credits_posted for a in accounts)
    assert sum(a.debits_pending for a in accounts) == sum(a.credits_pending for a in accounts)

    report = await ledger.verify(grace_s=60)
    assert report.ok, report.problems[:20]
    assert report.transfers_checked == len(found)


def run_cli_verify(database_url: str) -> subprocess.CompletedProcess[str] | None:
    """`billfold ledger verify` on `database_url`; None while the CLI does not exist."""
    if importlib.util.find_spec("billfold.cli") is None:
        return None
    command = [str(Path(sys.executable).with_name("billfold")), "ledger", "verify"]
    return subprocess.run(
        command,
        env={**os.environ, "BILLFOLD_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS_MAX,
        check=False,
    )


async def check_verify_notices_a_wrong_balance(ledger: Ledger, account: Account) -> None:
    """Proof that the checks above could fail: one unit of credit out of thin air is caught."""
    wrong = Balances(
        account.id,
        account.debits_pending,
        account.debits_posted,
        account.credits_pending,
        account.credits_posted + 1,
    )
    async with ledger.repository.write() as transaction:
        await transaction.update_balances([wrong])
    report = await ledger.verify(grace_s=60)
    assert {problem.kind for problem in report.problems} >= {"balance_mismatch", "unbalanced"}


# ----------------------------------------------------------------------------- tests


async def test_concurrent_writers_never_overdraw_and_conserve_money(
    isolated_database_url: str,
) -> None:
    ledger = await open_ledger(isolated_database_url, ledger_batch_window_ms=0)
    try:
        setup = await open_accounts(
            ledger,
            users=USER_ACCOUNTS,
            funding_per_account=FUNDING_PER_ACCOUNT,
            shared_pendings=SHARED_PENDINGS,
        )
        outcomes: list[Outcome] = []
        seeds = random.Random()
        with anyio.fail_after(RUN_SECONDS_MAX):
            async with anyio.create_task_group() as group:
                for _ in range(WRITERS):
                    seed = seeds.randrange(2**32)
                    group.start_soon(run_writer, isolated_database_url, setup, seed, outcomes)

        statuses = check_results(outcomes, setup)
        assert sum(len(o.request) for o in outcomes) >= WRITERS * TRANSFERS_PER_WRITER
        for status in (Status.OK, Status.EXCEEDS_CREDITS, Status.LINKED_EVENT_FAILED):
            assert statuses[status] > 0, statuses  # the scenario exercised what it claims
        kinds_done = {o.kind for o in outcomes if o.results[0].status is Status.OK}
        assert kinds_done == set(Kind), kinds_done
        await check_books(ledger, setup, [setup.funding_outcome, *outcomes])
        shared_posted = sum(
            1
            for o in outcomes
            if o.kind is Kind.SHARED_RESOLVE
            and o.results[0].status is Status.OK
            and o.request[0].flags & TransferFlags.POST_PENDING
        )
        funded = (
            USER_ACCOUNTS * FUNDING_PER_ACCOUNT
            + SHARED_TRANSFERS * SHARED_TRANSFER_AMOUNT
            + shared_posted * SHARED_PENDING_AMOUNT
        )
        users = await ledger.lookup_accounts(tenant_id=setup.tenant_id, ids=setup.user_ids)
        assert sum(user.balance_posted for user in users) == funded

        cli = await anyio.to_thread.run_sync(run_cli_verify, isolated_database_url)
        if cli is not None:
            assert cli.returncode == 0, cli.stdout + cli.stderr

        user = await ledger.get_account(tenant_id=setup.tenant_id, account_id=setup.user_ids[0])
        await check_verify_notices_a_wrong_balance(ledger, user)
    finally:
        await ledger.close()


DEADLOCK_WRITERS = 4
DEADLOCK_ACCOUNTS = 6
DEADLOCK_ROUNDS = 8
DEADLOCK_BATCH_SIZE = 240
DEADLOCK_SECONDS_MAX = 60


def _ring(setup: Setup, *, reverse: bool, size: int) -> list[NewTransfer]:
    """Transfers of 1 around the ring of accounts, in one direction or the other, so that
    two writers going opposite ways meet every account in the opposite order."""
    ring = list(reversed(setup.user_ids)) if reverse else list(setup.user_ids)
    pairs = list(zip(ring, ring[1:] + ring[:1], strict=True))
    return [_new_transfer(setup.tenant_id, *pairs[index % len(pairs)], 1) for index in range(size)]


async def _opposing_writer(
    url: str, setup: Setup, *, reverse: bool, outcomes: list[Outcome]
) -> None:
    ledger = await open_ledger(url, ledger_batch_window_ms=1, database_pool_size=POOL_SIZE)
    try:
        for round_number in range(DEADLOCK_ROUNDS):
            request = _ring(
                setup, reverse=reverse ^ bool(round_number % 2), size=DEADLOCK_BATCH_SIZE
            )
            results = await ledger.create_transfers(request)
            outcomes.append(Outcome(Kind.BULK, request, results))
            small = _ring(setup, reverse=not reverse, size=DEADLOCK_ACCOUNTS)
            outcomes.append(Outcome(Kind.SINGLES, small, await ledger.submit(small)))
    finally:
        await ledger.close()


async def test_writers_locking_shared_accounts_in_opposite_orders_do_not_deadlock(
    isolated_database_url: str,
) -> None:
    ledger = await open_ledger(isolated_database_url, ledger_batch_window_ms=0)
    try:
        setup = await open_accounts(ledger, users=DEADLOCK_ACCOUNTS, funding_per_account=10_000)
        outcomes: list[Outcome] = []
        with anyio.fail_after(DEADLOCK_SECONDS_MAX):
            async with anyio.create_task_group() as group:
                for index in range(DEADLOCK_WRITERS):
                    writer = functools.partial(
                        _opposing_writer,
                        isolated_database_url,
                        setup,
                        reverse=bool(index % 2),
                        outcomes=outcomes,
                    )
                    group.start_soon(writer)
        expected_count = (
            DEADLOCK_WRITERS * DEADLOCK_ROUNDS * (DEADLOCK_BATCH_SIZE + DEADLOCK_ACCOUNTS)
        )
        statuses = [r.status for o in outcomes for r in o.results]
        assert statuses == [Status.OK] * expected_count
        await check_books(ledger, setup, [setup.funding_outcome, *outcomes])
        accounts = await ledger.lookup_accounts(tenant_id=setup.tenant_id, ids=setup.user_ids)
        # A ring moves as much into each account as out of it.
        assert [a.balance_posted for a in accounts] == [10_000] * DEADLOCK_ACCOUNTS
    finally:
        await ledger.close()
