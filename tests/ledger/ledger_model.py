"""A plain in-memory model of the ledger's documented rules, written independently of
`billfold.ledger.state_machine` so the property tests compare two implementations.

Checks run in the documented order: shape of the transfer, then existence of its id, then
accounts, then pending state, then balances. Linked chains are undone by restoring a deep
copy of the model taken when the chain starts.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import uuid
from dataclasses import dataclass, field

from billfold.ledger.types import NewAccount, NewTransfer

AMOUNT_MAX = 2**127 - 1
LINKED, PENDING, POST, VOID, BAL_DEBIT, BAL_CREDIT = 1, 2, 4, 8, 16, 32
DMNEC, CMNED, HISTORY = 1, 2, 4
NS = 1_000_000_000


@dataclass
class ModelAccount:
    tenant_id: uuid.UUID
    ledger: str
    code: int
    flags: int
    owner_ref: str | None
    user_data: str | None
    status: str = "active"
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


@dataclass
class ModelTransfer:
    request: NewTransfer
    debit: uuid.UUID
    credit: uuid.UUID
    amount: int
    ledger: str
    code: int
    expires_at: int | None


@dataclass
class LedgerModel:
    accounts: dict[uuid.UUID, ModelAccount] = field(default_factory=dict)
    transfers: dict[uuid.UUID, ModelTransfer] = field(default_factory=dict)
    pending: dict[uuid.UUID, str] = field(default_factory=dict)
    last_timestamp: int = 0
    """The ledger clock: the test sets it from the database before each request, since
    other tenants' writes share it; the model then advances it as the ledger must."""

    def _next_timestamp(self, now_ns: int) -> int:
        return max(self.last_timestamp + 1, now_ns)

    # -- accounts

    def create_account(self, new: NewAccount) -> str:
        if new.id.int == 0:
            return "id_must_not_be_zero"
        existing = self.accounts.get(new.id)
        if existing is not None:
            same = (
                existing.tenant_id,
                existing.ledger,
                existing.code,
                existing.flags,
                existing.owner_ref,
                existing.user_data,
            ) == (new.tenant_id, new.ledger, new.code, new.flags, new.owner_ref, new.user_data)
            return "exists" if same else "exists_with_different_fields"
        if new.flags & ~7:
            return "reserved_flag"
        if new.flags & 3 == 3:
            return "flags_are_mutually_exclusive"
        if not re.fullmatch(r"[A-Z0-9]{2,12}", new.ledger):
            return "ledger_invalid"
        if new.code <= 0:
            return "code_must_not_be_zero"
        if new.code > 65535:
            return "code_exceeds_maximum"
        self.accounts[new.id] = ModelAccount(
            new.tenant_id, new.ledger, new.code, new.flags, new.owner_ref, new.user_data
        )
        return "ok"

    # -- transfers

    def create_transfers(
        self, batch: list[NewTransfer], now_ns: int
    ) -> list[tuple[str, int | None]]:
        """Statuses (and amounts moved) for one request."""
        results: list[tuple[str, int | None]] = [("", None)] * len(batch)
        index = 0
        while index < len(batch):
            if not batch[index].flags & LINKED:
                results[index] = self._one(batch[index], now_ns)
                index += 1
                continue
            last = index
            while last < len(batch) - 1 and batch[last].flags & LINKED:
                last += 1
            saved = copy.deepcopy(
                (self.accounts, self.transfers, self.pending, self.last_timestamp)
            )
            failure: tuple[int, str] | None = None
            for position in range(index, last + 1):
                if position == last and batch[last].flags & LINKED:
                    failure = (position, "linked_event_chain_open")
                    break
                outcome = self._one(batch[position], now_ns)
                results[position] = outcome
                if outcome[0] not in ("ok", "exists"):
                    failure = (position, outcome[0])
                    break
            if failure is not None:
                self.accounts, self.transfers, self.pending, self.last_timestamp = saved
                for position in range(index, last + 1):
                    results[position] = ("linked_event_failed", None)
                results[failure[0]] = (failure[1], None)
                if batch[last].flags & LINKED:
                    # TigerBeetle: the last event of an open chain is `chain_open` even
                    # when an earlier one failed first.
                    results[last] = ("linked_event_chain_open", None)
            index = last + 1
        return results

    def _one(self, t: NewTransfer, now_ns: int) -> tuple[str, int | None]:
        if t.flags & ~63:
            return ("reserved_flag", None)
        if t.id.int == 0:
            return ("id_must_not_be_zero", None)
        t = _zero_is_none(t)
        shape = self._shape(t)
        if shape != "ok":
            return (shape, None)
        if t.id in self.transfers:
            stored = self.transfers[t.id]
            return (
                ("exists", stored.amount)
                if self._same(t, stored)
                else ("exists_with_different_fields", None)
            )
        if t.flags & (POST | VOID):
            return self._resolve(t, now_ns)
        return self._regular(t, now_ns)

    @staticmethod
    def _same(t: NewTransfer, stored: ModelTransfer) -> bool:
        r = stored.request
        if t.amount is None:
            amount_same = True
        elif t.flags & (BAL_DEBIT | BAL_CREDIT):
            amount_same = stored.amount <= t.amount
        else:
            amount_same = stored.amount == t.amount
        return (
            amount_same
            and t.tenant_id == r.tenant_id
            and t.flags == r.flags
            and t.pending_id == r.pending_id
            and t.timeout_s == r.timeout_s
            and t.user_data == r.user_data
            and t.debit_account_id in (None, stored.debit)
            and t.credit_account_id in (None, stored.credit)
            and t.ledger in (None, stored.ledger)
            and t.code in (None, stored.code)
        )

    @staticmethod
    def _shape(t: NewTransfer) -> str:
        kinds = [bool(t.flags & f) for f in (PENDING, POST, VOID)]
        if sum(kinds) > 1 or (t.flags & (POST | VOID) and t.flags & (BAL_DEBIT | BAL_CREDIT)):
            return "flags_are_mutually_exclusive"
        if t.user_data is not None and len(t.user_data) > 128:
            return "user_data_too_long"
        if t.amount is not None and t.amount < 0:
            return "amount_must_not_be_negative"
        if t.amount is not None and t.amount > AMOUNT_MAX:
            return "amount_exceeds_maximum"
        if t.code is not None and t.code > 65535:
            return "code_exceeds_maximum"
        if not 0 <= t.timeout_s <= 2**32 - 1:
            return "overflows_timeout"
        if t.ledger is not None and not re.fullmatch(r"[A-Z0-9]{2,12}", t.ledger):
            return "ledger_invalid"
        if t.flags & (POST | VOID):
            if t.pending_id is None or t.pending_id.int == 0:
                return "pending_id_must_not_be_zero"
            if t.pending_id == t.id:
                return "pending_id_must_be_different"
            if t.timeout_s:
                return "timeout_reserved_for_pending_transfer"
            return "ok"
        if t.pending_id is not None:
            return "pending_id_must_be_zero"
        if t.timeout_s and not t.flags & PENDING:
            return "timeout_reserved_for_pending_transfer"
        if t.debit_account_id is None or t.debit_account_id.int == 0:
            return "debit_account_id_required"
        if t.credit_account_id is None or t.credit_account_id.int == 0:
            return "credit_account_id_required"
        if t.debit_account_id == t.credit_account_id:
            return "accounts_must_be_different"
        if not t.flags & (BAL_DEBIT | BAL_CREDIT) and not t.amount:
            return "amount_must_not_be_zero"
        if t.ledger is None:
            return "ledger_invalid"
        if t.code is None or t.code < 1:
            return "code_must_not_be_zero"
        return "ok"

    def _regular(self, t: NewTransfer, now_ns: int) -> tuple[str, int | None]:
        assert t.debit_account_id is not None and t.credit_account_id is not None
        d = self.accounts.get(t.debit_account_id)
        c = self.accounts.get(t.credit_account_id)
        if d is None or c is None or d.tenant_id != t.tenant_id or c.tenant_id != t.tenant_id:
            return ("account_not_found", None)
        if d.ledger != t.ledger or c.ledger != t.ledger:
            return ("ledgers_must_match", None)
        for account in (d, c):
            if account.status != "active":
                return ("account_frozen" if account.status == "frozen" else "account_closed", None)
        amount = AMOUNT_MAX if t.amount is None else t.amount
        if t.flags & BAL_DEBIT:
            amount = min(amount, max(0, d.credits_posted - d.debits_pending - d.debits_posted))
        if t.flags & BAL_CREDIT:
            amount = min(amount, max(0, c.debits_posted - c.credits_pending - c.credits_posted))
        if amount == 0 and t.flags & BAL_DEBIT:
            return ("exceeds_credits", None)
        if amount == 0 and t.flags & BAL_CREDIT:
            return ("exceeds_debits", None)
        pending = bool(t.flags & PENDING)
        if pending and d.debits_pending + amount > AMOUNT_MAX:
            return ("overflows_debits_pending", None)
        if pending and c.credits_pending + amount > AMOUNT_MAX:
            return ("overflows_credits_pending", None)
        if not pending and d.debits_posted + amount > AMOUNT_MAX:
            return ("overflows_debits_posted", None)
        if not pending and c.credits_posted + amount > AMOUNT_MAX:
            return ("overflows_credits_posted", None)
        if d.debits_pending + d.debits_posted + amount > AMOUNT_MAX:
            return ("overflows_debits", None)
        if c.credits_pending + c.credits_posted + amount > AMOUNT_MAX:
            return ("overflows_credits", None)
        if d.flags & DMNEC and d.debits_pending + d.debits_posted + amount > d.credits_posted:
            return ("exceeds_credits", None)
        if c.flags & CMNED and c.credits_pending + c.credits_posted + amount > c.debits_posted:
            return ("exceeds_debits", None)
        expires_at = None
        if pending and t.timeout_s:
            expires_at = self._next_timestamp(now_ns) + t.timeout_s * NS
        self.last_timestamp = self._next_timestamp(now_ns)
        if pending:
            d.debits_pending += amount
            c.credits_pending += amount
            self.pending[t.id] = "pending"
        else:
            d.debits_posted += amount
            c.credits_posted += amount
        self.transfers[t.id] = ModelTransfer(
            t, t.debit_account_id, t.credit_account_id, amount, t.ledger, t.code or 0, expires_at
        )
        return ("ok", amount)

    def _resolve(self, t: NewTransfer, now_ns: int) -> tuple[str, int | None]:
        assert t.pending_id is not None
        p = self.transfers.get(t.pending_id)
        if p is None or p.request.tenant_id != t.tenant_id:
            return ("pending_transfer_not_found", None)
        if not p.request.flags & PENDING:
            return ("pending_transfer_not_pending", None)
        if (
            (t.debit_account_id is not None and t.debit_account_id != p.debit)
            or (t.credit_account_id is not None and t.credit_account_id != p.credit)
            or (t.ledger is not None and t.ledger != p.ledger)
            or (t.code is not None and t.code != p.code)
        ):
            return ("pending_transfer_has_different_fields", None)
        state = self.pending[t.pending_id]
        if state != "pending":
            return (
                {
                    "posted": "pending_transfer_already_posted",
                    "voided": "pending_transfer_already_voided",
                    "expired": "pending_transfer_expired",
                }[state],
                None,
            )
        if p.expires_at is not None and p.expires_at <= self._next_timestamp(now_ns):
            return ("pending_transfer_expired", None)
        post = bool(t.flags & POST)
        amount = p.amount if t.amount is None else t.amount
        if post and amount > p.amount:
            return ("exceeds_pending_transfer_amount", None)
        if not post and amount != p.amount:
            return ("pending_transfer_has_different_amount", None)
        d, c = self.accounts[p.debit], self.accounts[p.credit]
        if post:
            for account in (d, c):
                if account.status != "active":
                    return (
                        "account_frozen" if account.status == "frozen" else "account_closed",
                        None,
                    )
        self.last_timestamp = self._next_timestamp(now_ns)
        d.debits_pending -= p.amount
        c.credits_pending -= p.amount
        if post:
            d.debits_posted += amount
            c.credits_posted += amount
        self.pending[p.request.id] = "posted" if post else "voided"
        self.transfers[t.id] = ModelTransfer(t, p.debit, p.credit, amount, p.ledger, p.code, None)
        return ("ok", amount)

    def expire(self, now_ns: int) -> int:
        """Void every open pending transfer past its timeout; returns how many."""
        count = 0
        for transfer_id, state in list(self.pending.items()):
            p = self.transfers[transfer_id]
            if state == "pending" and p.expires_at is not None and p.expires_at <= now_ns:
                self.accounts[p.debit].debits_pending -= p.amount
                self.accounts[p.credit].credits_pending -= p.amount
                self.pending[transfer_id] = "expired"
                count += 1
        return count


def _zero_is_none(t: NewTransfer) -> NewTransfer:
    """TigerBeetle reads a zero id as none; on a post or void, a zero code too."""

    def id_or_none(value: uuid.UUID | None) -> uuid.UUID | None:
        return None if value is None or value.int == 0 else value

    resolve = bool(t.flags & (POST | VOID))
    return dataclasses.replace(
        t,
        pending_id=id_or_none(t.pending_id),
        debit_account_id=id_or_none(t.debit_account_id),
        credit_account_id=id_or_none(t.credit_account_id),
        code=None if resolve and t.code == 0 else t.code,
    )
