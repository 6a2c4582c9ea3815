"""A writer process killed with SIGKILL mid-batch leaves a ledger that verifies, holding every
transfer it acknowledged and none it rejected.

`_crash_writer.py` prints a line per transfer only after the batch that holds it committed.
The test kills it at a random moment after enough acknowledgements, several times over the
same database, and after each kill checks the books from a fresh `Ledger`.
"""

from __future__ import annotations

import functools
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from billfold.ledger.ledger import Ledger
from billfold.ledger.types import (
    BATCH_SIZE_MAX,
    AccountFlags,
    CreateTransferStatus,
    NewAccount,
    NewTransfer,
    Transfer,
    TransferFlags,
)
from conftest import open_ledger
from ledger._crash_writer import BULK_BATCH_SIZE, CLIENT_TASKS, REQUEST_SIZE_MAX

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WRITER_SCRIPT = Path(__file__).with_name("_crash_writer.py")
ROUNDS = 3
ACKS_BEFORE_KILL_MIN = 1_500
ACKS_BEFORE_KILL_MAX = 3_000
ROUND_SECONDS_MAX = 45.0
"""Generous: a loaded machine (parallel test workers) starts the writer slowly; a round ends
as soon as its acknowledgement count is reached."""
WRITER_SECONDS_MAX = 90
USER_ACCOUNTS = 20
FUNDING_PER_ACCOUNT = 10_000
IN_FLIGHT_MAX = CLIENT_TASKS * REQUEST_SIZE_MAX + BULK_BATCH_SIZE
"""Most transfers a writer can have committed but not yet acknowledged when it dies."""


@dataclass
class Acknowledgements:
    recorded: set[uuid.UUID] = field(default_factory=set)
    rejected: set[uuid.UUID] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)

    def add_lines(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            word, _, hex_id = line.decode().partition(" ")
            if word == "ok":
                self.recorded.add(uuid.UUID(hex=hex_id))
            elif word == "no":
                self.rejected.add(uuid.UUID(hex=hex_id))
            else:
                self.unexpected.append(line.decode())


def _complete_lines(output: bytes) -> list[bytes]:
    """Lines the writer finished; a line cut by the kill was never an acknowledgement."""
    lines = output.split(b"\n")
    return [line for line in lines[:-1] if line]


def run_writer_until_killed(
    *,
    database_url: str,
    tenant_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    seed: int,
    stderr_path: Path,
) -> tuple[list[bytes], int]:
    """Start the writer, SIGKILL it once it acknowledged a random number of transfers (or
    the round's time is up), and return every complete line it printed and its ack count."""
    kill_after_acks = random.Random(seed).randint(ACKS_BEFORE_KILL_MIN, ACKS_BEFORE_KILL_MAX)
    command = [
        sys.executable,
        str(WRITER_SCRIPT),
        database_url,
        tenant_id.hex,
        str(seed),
        str(WRITER_SECONDS_MAX),
        *(account_id.hex for account_id in account_ids),
    ]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    output = bytearray()
    try:
        descriptor = process.stdout.fileno()
        deadline = time.monotonic() + ROUND_SECONDS_MAX
        acks = 0
        while acks < kill_after_acks and (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(descriptor, 1 << 16)
            if not chunk:
                break  # the writer died on its own: the return code below says so
            output += chunk
            acks += chunk.count(b"ok ")
        os.kill(process.pid, signal.SIGKILL)
        while chunk := os.read(descriptor, 1 << 16):  # what it printed before the kill
            output += chunk
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, (
        f"the writer exited with {process.returncode} before the kill:\n"
        + stderr_path.read_text()[-4000:]
    )
    lines = _complete_lines(bytes(output))
    return lines, sum(line.startswith(b"ok ") for line in lines)


async def _open_funded_accounts(
    ledger: Ledger, tenant_id: uuid.UUID
) -> tuple[list[uuid.UUID], set[uuid.UUID]]:
    """A funding account and the user accounts it funds; returns their ids (funding
    first) and the funding transfers' ids."""
    funding_id = uuid.uuid4()
    user_ids = [uuid.uuid4() for _ in range(USER_ACCOUNTS)]
    results = await ledger.create_accounts(
        [NewAccount(id=funding_id, tenant_id=tenant_id, ledger="USD", code=1)]
        + [
            NewAccount(
                id=user_id,
                tenant_id=tenant_id,
                ledger="USD",
                code=1,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
            for user_id in user_ids
        ]
    )
    assert [result.status for result in results] == ["ok"] * (USER_ACCOUNTS + 1)
    fundings = [
        NewTransfer(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            debit_account_id=funding_id,
            credit_account_id=user_id,
            amount=FUNDING_PER_ACCOUNT,
            ledger="USD",
            code=1,
        )
        for user_id in user_ids
    ]
    results_transfers = await ledger.create_transfers(fundings)
    assert all(result.status is CreateTransferStatus.OK for result in results_transfers)
    return [funding_id, *user_ids], {transfer.id for transfer in fundings}


async def _tenant_transfers(ledger: Ledger, tenant_id: uuid.UUID) -> list[Transfer]:
    """Every transfer of the tenant, in the ledger's order."""
    transfers: list[Transfer] = []
    async with ledger.repository.read() as reader:
        async for chunk in reader.all_transfers(chunk_size=5_000):
            transfers.extend(t for t in chunk if t.tenant_id == tenant_id)
    return transfers


def _replay_balances(transfers: Sequence[Transfer]) -> dict[uuid.UUID, list[int]]:
    """Each account's (debits pending, debits posted, credits pending, credits posted)
    from the transfers alone, independently of the ledger's own verifier."""
    balances: dict[uuid.UUID, list[int]] = {}
    pendings: dict[uuid.UUID, Transfer] = {}
    for transfer in transfers:
        debit = balances.setdefault(transfer.debit_account_id, [0, 0, 0, 0])
        credit = balances.setdefault(transfer.credit_account_id, [0, 0, 0, 0])
        if transfer.flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            assert transfer.pending_id is not None
            pending = pendings.pop(transfer.pending_id)  # resolved at most once
            debit[0] -= pending.amount
            credit[2] -= pending.amount
            if transfer.flags & TransferFlags.POST_PENDING:
                debit[1] += transfer.amount
                credit[3] += transfer.amount
        elif transfer.flags & TransferFlags.PENDING:
            pendings[transfer.id] = transfer
            debit[0] += transfer.amount
            credit[2] += transfer.amount
        else:
            debit[1] += transfer.amount
            credit[3] += transfer.amount
    return balances


async def _present(
    ledger: Ledger, tenant_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    wanted = list(ids)
    found: set[uuid.UUID] = set()
    for start in range(0, len(wanted), BATCH_SIZE_MAX):
        chunk = wanted[start : start + BATCH_SIZE_MAX]
        found.update(t.id for t in await ledger.lookup_transfers(tenant_id=tenant_id, ids=chunk))
    return found


async def _check_books(
    database_url: str,
    tenant_id: uuid.UUID,
    account_ids: Sequence[uuid.UUID],
    acknowledgements: Acknowledgements,
    rounds_done: int,
) -> None:
    ledger = await open_ledger(database_url, ledger_batch_window_ms=0)
    try:
        report = await ledger.verify(grace_s=60)
        assert report.ok, report.problems[:20]

        recorded = acknowledgements.recorded
        missing = recorded - await _present(ledger, tenant_id, recorded)
        assert not missing, f"{len(missing)} acknowledged transfers are gone, e.g. {min(missing)}"
        phantom = await _present(ledger, tenant_id, acknowledgements.rejected)
        assert not phantom, f"{len(phantom)} rejected transfers were recorded"
        assert report.transfers_checked >= len(recorded)

        transfers = await _tenant_transfers(ledger, tenant_id)
        unacknowledged = {t.id for t in transfers} - recorded
        # Only what was in flight at a kill may be committed without an acknowledgement.
        assert len(unacknowledged) <= rounds_done * IN_FLIGHT_MAX

        expected = _replay_balances(transfers)
        accounts = await ledger.lookup_accounts(tenant_id=tenant_id, ids=account_ids)
        assert len(accounts) == len(account_ids)
        for account in accounts:
            stored = [
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
            ]
            assert stored == expected.get(account.id, [0, 0, 0, 0]), account.id
        funding, *users = accounts
        for user in users:
            assert user.debits_pending + user.debits_posted <= user.credits_posted, user.id
        assert funding.debits_posted == USER_ACCOUNTS * FUNDING_PER_ACCOUNT
        assert sum(u.balance_posted for u in users) == USER_ACCOUNTS * FUNDING_PER_ACCOUNT
        assert sum(u.debits_pending for u in users) == sum(u.credits_pending for u in users)
    finally:
        await ledger.close()


async def test_writer_killed_mid_batch_leaves_a_verified_ledger_with_every_acknowledged_transfer(
    isolated_database_url: str, tmp_path: Path
) -> None:
    tenant_id = uuid.uuid4()
    ledger = await open_ledger(isolated_database_url, ledger_batch_window_ms=0)
    try:
        account_ids, funding_ids = await _open_funded_accounts(ledger, tenant_id)
    finally:
        await ledger.close()
    acknowledgements = Acknowledgements(recorded=funding_ids)
    for round_number in range(1, ROUNDS + 1):
        lines, acks = await anyio.to_thread.run_sync(
            functools.partial(
                run_writer_until_killed,
                database_url=isolated_database_url,
                tenant_id=tenant_id,
                account_ids=account_ids[1:],
                seed=random.randrange(2**32),
                stderr_path=tmp_path / f"writer-{round_number}.stderr",
            )
        )
        assert acks >= 100, f"round {round_number}: the writer acknowledged only {acks}"
        acknowledgements.add_lines(lines)
        assert not acknowledgements.unexpected, acknowledgements.unexpected[:5]
        assert acknowledgements.rejected, "the writer overdraws often; some must be refused"
        await _check_books(
            isolated_database_url, tenant_id, account_ids, acknowledgements, round_number
        )
