"""`billfold ledger verify`: recompute every balance from the transfers and check the books.

Replays all transfers in timestamp order over one consistent snapshot and reports:
- a stored balance that differs from the recomputed one;
- a ledger (asset) whose total debits differ from its total credits, posted or pending;
- an account whose flags were violated at any point of the replay;
- timestamps that do not strictly increase, or a transfer older than its accounts;
- a transfer that references a missing account, crosses tenants or ledgers, or resolves a
  pending transfer that does not exist or was already resolved;
- a post or void recorded at or after its pending transfer's expiry, or an expiry before it;
- a pending status that disagrees with the transfers, and pending transfers still open more
  than `grace_s` past their timeout.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.ids import format_id
from billfold.ledger.repository import LedgerReader
from billfold.ledger.types import (
    ACCOUNT_ID_PREFIX,
    AMOUNT_MAX,
    TRANSFER_ID_PREFIX,
    Account,
    AccountFlags,
    PendingStatus,
    Transfer,
    TransferFlags,
)

__all__ = ["Problem", "VerifyReport", "verify_ledger"]

PROBLEMS_KEPT_MAX = 1000
CHUNK_SIZE = 10_000


def _acc(account_id: uuid.UUID) -> str:
    """An account as the API and the operator's console name it (`acc_…`): the report is
    read by people who look the subject up there, not in the database."""
    return format_id(ACCOUNT_ID_PREFIX, account_id)


def _txf(transfer_id: uuid.UUID | None) -> str:
    return "none" if transfer_id is None else format_id(TRANSFER_ID_PREFIX, transfer_id)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    subject: str
    detail: str


@dataclass(slots=True)
class VerifyReport:
    accounts_checked: int = 0
    transfers_checked: int = 0
    ledgers_checked: int = 0
    problems_found: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problems_found == 0

    def add(self, kind: str, subject: str, detail: str) -> None:
        self.problems_found += 1
        if len(self.problems) < PROBLEMS_KEPT_MAX:
            self.problems.append(Problem(kind, subject, detail))


@dataclass(slots=True)
class _Balances:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)


@dataclass(slots=True)
class _Replay:
    report: VerifyReport
    accounts: dict[uuid.UUID, Account]
    balances: dict[uuid.UUID, _Balances]
    open_pending: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    resolved: dict[uuid.UUID, PendingStatus] = field(default_factory=dict)
    last_timestamp: int = -1

    def apply(self, transfer: Transfer) -> None:
        report = self.report
        report.transfers_checked += 1
        if transfer.timestamp <= self.last_timestamp:
            report.add("timestamp_order", _txf(transfer.id), "timestamp does not strictly increase")
        self.last_timestamp = transfer.timestamp
        if not 0 <= transfer.amount <= AMOUNT_MAX:
            report.add("amount_range", _txf(transfer.id), f"amount {transfer.amount} out of range")
        debit = self.accounts.get(transfer.debit_account_id)
        credit = self.accounts.get(transfer.credit_account_id)
        if debit is None or credit is None:
            report.add(
                "account_missing", _txf(transfer.id), "references an account that does not exist"
            )
            return
        self._check_references(transfer, debit, credit)
        debit_balances = self.balances[debit.id]
        credit_balances = self.balances[credit.id]
        flags = transfer.flags
        if flags & (TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING):
            self._resolve(transfer, debit_balances, credit_balances)
        elif flags & TransferFlags.PENDING:
            debit_balances.debits_pending += transfer.amount
            credit_balances.credits_pending += transfer.amount
            self.open_pending[transfer.id] = transfer
        else:
            debit_balances.debits_posted += transfer.amount
            credit_balances.credits_posted += transfer.amount
        self._check_flags(transfer, debit, debit_balances)
        self._check_flags(transfer, credit, credit_balances)

    def _check_references(self, transfer: Transfer, debit: Account, credit: Account) -> None:
        if not (debit.tenant_id == credit.tenant_id == transfer.tenant_id):
            self.report.add("tenant_mismatch", _txf(transfer.id), "accounts in another tenant")
        if not (debit.ledger == credit.ledger == transfer.ledger):
            self.report.add("ledger_mismatch", _txf(transfer.id), "accounts in another ledger")
        if transfer.timestamp <= max(debit.timestamp, credit.timestamp):
            self.report.add(
                "timestamp_order", _txf(transfer.id), "transfer is older than its accounts"
            )

    def _resolve(self, transfer: Transfer, debit: _Balances, credit: _Balances) -> None:
        pending_id = transfer.pending_id
        pending = self.open_pending.pop(pending_id, None) if pending_id is not None else None
        if pending is None:
            self.report.add(
                "pending_unresolvable",
                _txf(transfer.id),
                f"resolves {_txf(pending_id)}, not open at that time",
            )
            return
        posting = bool(transfer.flags & TransferFlags.POST_PENDING)
        if (posting and transfer.amount > pending.amount) or (
            not posting and transfer.amount != pending.amount
        ):
            self.report.add(
                "pending_amount", _txf(transfer.id), "amount disagrees with pending transfer"
            )
        expiry = bool(transfer.flags & TransferFlags.EXPIRY)
        if pending.expires_at is not None and (transfer.timestamp >= pending.expires_at) != expiry:
            self.report.add(
                "pending_expiry",
                _txf(transfer.id),
                "resolved after its pending transfer expired"
                if not expiry
                else "expired before its pending transfer's timeout",
            )
        debit.debits_pending -= pending.amount
        credit.credits_pending -= pending.amount
        if posting:
            debit.debits_posted += transfer.amount
            credit.credits_posted += transfer.amount
            self.resolved[pending.id] = PendingStatus.POSTED
        elif expiry:
            self.resolved[pending.id] = PendingStatus.EXPIRED
        else:
            self.resolved[pending.id] = PendingStatus.VOIDED

    def _check_flags(self, transfer: Transfer, account: Account, balances: _Balances) -> None:
        if account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
            balances.debits_pending + balances.debits_posted > balances.credits_posted
        ):
            self.report.add(
                "flags_violated", _acc(account.id), f"debits exceed credits at {_txf(transfer.id)}"
            )
        if account.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
            balances.credits_pending + balances.credits_posted > balances.debits_posted
        ):
            self.report.add(
                "flags_violated", _acc(account.id), f"credits exceed debits at {_txf(transfer.id)}"
            )


async def verify_ledger(reader: LedgerReader, *, now_ns: int, grace_s: int) -> VerifyReport:
    """Check the whole ledger as seen by `reader`'s snapshot."""
    report = VerifyReport()
    accounts: dict[uuid.UUID, Account] = {}
    async for chunk in reader.all_accounts(chunk_size=CHUNK_SIZE):
        for account in chunk:
            accounts[account.id] = account
    report.accounts_checked = len(accounts)
    replay = _Replay(report, accounts, {account_id: _Balances() for account_id in accounts})
    async for transfers in reader.all_transfers(chunk_size=CHUNK_SIZE):
        for transfer in transfers:
            replay.apply(transfer)
    clock = await reader.last_timestamp()
    if replay.last_timestamp > clock:
        report.add("clock", "ledger_clock", "a transfer is newer than the ledger's clock")
    _compare_balances(report, accounts, replay.balances)
    _check_ledger_totals(report, accounts)
    await _check_pending(report, reader, replay, now_ns=now_ns, grace_s=grace_s)
    return report


def _compare_balances(
    report: VerifyReport, accounts: dict[uuid.UUID, Account], balances: dict[uuid.UUID, _Balances]
) -> None:
    for account in accounts.values():
        stored = (
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
        recomputed = balances[account.id].as_tuple()
        if stored != recomputed:
            report.add(
                "balance_mismatch",
                _acc(account.id),
                f"stored (debits pending, debits posted, credits pending, credits posted)"
                f" {stored} but the transfers give {recomputed}",
            )


def _check_ledger_totals(report: VerifyReport, accounts: dict[uuid.UUID, Account]) -> None:
    totals: defaultdict[tuple[uuid.UUID, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account in accounts.values():
        total = totals[(account.tenant_id, account.ledger)]
        total[0] += account.debits_pending
        total[1] += account.debits_posted
        total[2] += account.credits_pending
        total[3] += account.credits_posted
    report.ledgers_checked = len(totals)
    for (tenant_id, ledger), (
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) in totals.items():
        subject = f"{tenant_id}/{ledger}"
        if debits_posted != credits_posted:
            report.add(
                "unbalanced", subject, f"posted debits {debits_posted} != credits {credits_posted}"
            )
        if debits_pending != credits_pending:
            report.add(
                "unbalanced",
                subject,
                f"pending debits {debits_pending} != credits {credits_pending}",
            )


async def _check_pending(
    report: VerifyReport, reader: LedgerReader, replay: _Replay, *, now_ns: int, grace_s: int
) -> None:
    stored_open: set[uuid.UUID] = set()
    async for rows in reader.open_pending(chunk_size=CHUNK_SIZE):
        stored_open.update(row.transfer_id for row in rows)
    for transfer_id in stored_open - replay.open_pending.keys():
        report.add(
            "pending_status", _txf(transfer_id), "marked pending but the transfers resolve it"
        )
    for transfer_id in replay.open_pending.keys() - stored_open:
        report.add(
            "pending_status", _txf(transfer_id), "open in the transfers but not marked pending"
        )
    resolved_ids = list(replay.resolved)
    for start in range(0, len(resolved_ids), CHUNK_SIZE):
        chunk = resolved_ids[start : start + CHUNK_SIZE]
        stored = await reader.pending_statuses(chunk)
        for transfer_id in chunk:
            if stored.get(transfer_id) is not replay.resolved[transfer_id]:
                report.add(
                    "pending_status",
                    _txf(transfer_id),
                    f"stored {stored.get(transfer_id)} but the transfers say"
                    f" {replay.resolved[transfer_id]}",
                )
    deadline = now_ns - grace_s * NANOSECONDS_PER_SECOND
    for transfer in replay.open_pending.values():
        # More than `grace_s` past: one that expired exactly `grace_s` ago is not overdue yet.
        if transfer.expires_at is not None and transfer.expires_at < deadline:
            report.add("pending_overdue", _txf(transfer.id), "still open past its timeout")
