"""A ledger writer for `test_crash.py` to kill with SIGKILL mid-batch.

    python _crash_writer.py DATABASE_URL TENANT_ID SEED SECONDS_MAX ACCOUNT_ID...

Moves money among ACCOUNT_IDs (accounts that must not go negative) from several concurrent
tasks: small requests through the batching writer (plain transfers, linked chains, pending
transfers later posted or voided) and bulk `create_transfers` batches. After each result it
prints one line per transfer and flushes, so a line means "committed and acknowledged":

    ok <hex>   recorded
    no <hex>   rejected (the ledger must not hold it)

Stops by itself after SECONDS_MAX, so an orphaned writer cannot run forever.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections.abc import Sequence

from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags, TransferResult

CLIENT_TASKS = 4
REQUEST_SIZE_MAX = 4
BULK_BATCH_SIZE = 300
AMOUNT_MAX = 2_000
LEDGER = "USD"
CODE = 1


class Writer:
    def __init__(
        self,
        ledger: Ledger,
        *,
        tenant_id: uuid.UUID,
        account_ids: Sequence[uuid.UUID],
        seed: int,
        deadline: float,
    ) -> None:
        self.ledger = ledger
        self.tenant_id = tenant_id
        self.account_ids = list(account_ids)
        self.random = random.Random(seed)
        self.deadline = deadline

    def _pair(self) -> tuple[uuid.UUID, uuid.UUID]:
        debit_account_id, credit_account_id = self.random.sample(self.account_ids, 2)
        return debit_account_id, credit_account_id

    def _plain(self, *, flags: int = 0) -> NewTransfer:
        debit_account_id, credit_account_id = self._pair()
        return NewTransfer(
            id=uuid.uuid4(),
            tenant_id=self.tenant_id,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=self.random.randint(1, AMOUNT_MAX),
            ledger=LEDGER,
            code=CODE,
            flags=flags,
        )

    def _chain(self, length: int) -> list[NewTransfer]:
        chain = [self._plain(flags=TransferFlags.LINKED) for _ in range(length - 1)]
        return [*chain, self._plain()]

    def _resolve(self, pending_id: uuid.UUID) -> NewTransfer:
        if self.random.random() < 0.5:
            return NewTransfer(
                id=uuid.uuid4(),
                tenant_id=self.tenant_id,
                pending_id=pending_id,
                flags=TransferFlags.VOID_PENDING,
            )
        return NewTransfer(
            id=uuid.uuid4(),
            tenant_id=self.tenant_id,
            pending_id=pending_id,
            flags=TransferFlags.POST_PENDING,
        )

    def _request(self, open_pending: list[uuid.UUID]) -> list[NewTransfer]:
        roll = self.random.random()
        if roll < 0.2 and open_pending:
            return [self._resolve(open_pending.pop(self.random.randrange(len(open_pending))))]
        if roll < 0.35:
            return [self._plain(flags=TransferFlags.PENDING)]
        if roll < 0.55:
            return self._chain(self.random.randint(2, REQUEST_SIZE_MAX))
        return [self._plain() for _ in range(self.random.randint(1, REQUEST_SIZE_MAX))]

    async def client(self) -> None:
        open_pending: list[uuid.UUID] = []
        while time.monotonic() < self.deadline:
            request = self._request(open_pending)
            results = await self.ledger.submit(request)
            for transfer, result in zip(request, results, strict=True):
                if (
                    transfer.flags & TransferFlags.PENDING
                    and result.status is CreateTransferStatus.OK
                ):
                    open_pending.append(transfer.id)
            emit(results)

    async def bulk(self) -> None:
        while time.monotonic() < self.deadline:
            batch: list[NewTransfer] = []
            while len(batch) < BULK_BATCH_SIZE - REQUEST_SIZE_MAX:
                roll = self.random.random()
                batch.extend(self._chain(3) if roll < 0.1 else [self._plain()])
            emit(await self.ledger.create_transfers(batch))


def emit(results: Sequence[TransferResult]) -> None:
    lines = []
    for result in results:
        if result.status is CreateTransferStatus.OK:
            lines.append(f"ok {result.id.hex}\n")
        elif result.status is CreateTransferStatus.EXISTS:
            lines.append(f"exists {result.id.hex}\n")  # fresh ids: the test fails on this
        else:
            lines.append(f"no {result.id.hex}\n")
    sys.stdout.write("".join(lines))
    sys.stdout.flush()


async def main(arguments: Sequence[str]) -> None:
    database_url, tenant_id, seed, seconds_max, *account_ids = arguments
    ledger = Ledger.from_settings(
        Settings(database_url=database_url, database_pool_size=4, ledger_batch_window_ms=1)
    )
    await ledger.open()
    writer = Writer(
        ledger,
        tenant_id=uuid.UUID(tenant_id),
        account_ids=[uuid.UUID(account_id) for account_id in account_ids],
        seed=int(seed),
        deadline=time.monotonic() + float(seconds_max),
    )
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(CLIENT_TASKS):
                group.create_task(writer.client())
            group.create_task(writer.bulk())
    finally:
        await ledger.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
