"""Opening wallets and the tenant's chart of accounts, and reading balances.

Opening touches the ledger and the wallets table, which commit separately, so
:class:`WalletBook` is called OUTSIDE any unit of work (on SQLite a unit of work holds the
write lock the ledger needs). Both steps are idempotent (deterministic ids, insert if
absent), so a crash between them is healed by the next use.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from billfold.kit.auth import LEDGER_TENANT_NAMESPACE, Mode
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation
from billfold.kit.money import UnknownAsset, default_registry
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import Account, CreateAccountStatus, NewAccount
from billfold.wallets.accounts import OwnerKind, chart_of_accounts, wallet_account
from billfold.wallets.errors import UnsupportedCurrency
from billfold.wallets.models import Wallet
from billfold.wallets.repository import WalletRepository

__all__ = [
    "WalletBalances",
    "WalletBook",
    "balances_of",
    "currency_exponent",
    "ledger_tenant_of",
]

_ASSETS = default_registry()
_OPENED = (CreateAccountStatus.OK, CreateAccountStatus.EXISTS)
_KNOWN_ACCOUNTS_MAX = 100_000


def ledger_tenant_of(tenant_id: uuid.UUID, mode: Mode | str) -> uuid.UUID:
    """The ledger tenant of (tenant, mode), as `kit.auth.Principal.ledger_tenant_id`."""
    return uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:{Mode(mode).value}")


_NO_CURRENCY = "XXX"
"""ISO 4217's code for transactions where no currency is involved: nothing to hold."""


def currency_exponent(currency: str) -> int:
    """The minor-unit exponent of a currency wallets may hold, or `unsupported_currency`."""
    if currency == _NO_CURRENCY:
        raise UnsupportedCurrency(
            "XXX is ISO 4217's code for no currency; wallets hold currencies.",
            currency=currency,
        )
    try:
        return _ASSETS.get(currency).exponent
    except UnknownAsset as error:
        raise UnsupportedCurrency(
            "Wallets hold ISO 4217 currencies, USDC and ETH.", currency=currency[:12]
        ) from error


@dataclass(frozen=True, slots=True)
class WalletBalances:
    """A wallet's balances in minor units.

    available: what the owner can spend now (posted credits minus posted and held debits);
    pending: incoming money not yet settled (e.g. a top-up the provider has not confirmed);
    held: reserved by authorizations and withdrawals in flight."""

    available: int
    pending: int
    held: int


def balances_of(account: Account) -> WalletBalances:
    return WalletBalances(
        available=account.credits_posted - account.debits_posted - account.debits_pending,
        pending=account.credits_pending,
        held=account.debits_pending,
    )


class WalletBook:
    """Opens the accounts money needs, remembering what this process already opened."""

    def __init__(self, ledger: Ledger, unit_of_work: UnitOfWork) -> None:
        self.ledger = ledger
        self.unit_of_work = unit_of_work
        self._known: set[uuid.UUID] = set()

    async def _open(self, accounts: list[NewAccount]) -> None:
        missing = [account for account in accounts if account.id not in self._known]
        if not missing:
            return
        results = await self.ledger.create_accounts(missing)
        for result in results:
            if result.status not in _OPENED:
                raise InvariantViolation(f"opening a system account: {result.status.value}")
        if len(self._known) > _KNOWN_ACCOUNTS_MAX:
            self._known.clear()
        self._known.update(account.id for account in missing)

    async def ensure_chart(self, *, tenant_id: uuid.UUID, mode: Mode, currency: str) -> None:
        """The tenant's system accounts in `currency`, opened on first use."""
        currency_exponent(currency)
        ledger_tenant = ledger_tenant_of(tenant_id, mode)
        await self._open([entry.account for entry in chart_of_accounts(ledger_tenant, currency)])

    async def open_wallet(
        self,
        *,
        tenant_id: uuid.UUID,
        mode: Mode,
        owner_kind: OwnerKind,
        owner_id: uuid.UUID,
        currency: str,
    ) -> uuid.UUID:
        """The owner's wallet in `currency` (its ledger account id), opened on first use."""
        await self.ensure_chart(tenant_id=tenant_id, mode=mode, currency=currency)
        account = wallet_account(
            ledger_tenant_of(tenant_id, mode),
            owner_kind=owner_kind,
            owner_id=owner_id,
            currency=currency,
        )
        if account.id in self._known:
            return account.id
        [result] = await self.ledger.create_accounts([account])
        if result.status not in _OPENED:
            raise InvariantViolation(f"opening a wallet account: {result.status.value}")
        async with self.unit_of_work.begin() as session:
            await WalletRepository(session).add_wallet_if_absent(
                Wallet(
                    id=account.id,
                    tenant_id=tenant_id,
                    mode=mode.value,
                    owner_kind=owner_kind.value,
                    owner_id=owner_id,
                    currency=currency,
                    created_at=time.time_ns(),
                )
            )
        self._known.add(account.id)
        return account.id
