"""Where money lives in the ledger: account codes, the chart of system accounts and the
deterministic ids of every account a wallet or a payment uses. Pure functions.

Every id is a UUIDv5 under the ledger tenant (a tenant's test or live mode), so opening an
account twice names the same account (the ledger answers `exists`), and a test-mode account
can never collide with a live-mode one.

The chart's ``fx_position`` account is the one FX conversions post through: its definition
(id, code, owner) is fx's (:func:`billfold.fx.positions.position_account`), so both name the
same account, whichever opens it first.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from billfold.fx.positions import FX_POSITION_ACCOUNT_CODE, FX_POSITION_NAME, position_account
from billfold.ledger.types import AccountFlags, NewAccount

__all__ = [
    "PROVIDER_NAMES",
    "AccountCode",
    "ChartEntry",
    "OwnerKind",
    "SystemRole",
    "TransferCode",
    "chart_of_accounts",
    "clearing_account_id",
    "system_account_id",
    "wallet_account",
    "wallet_account_id",
]

PROVIDER_NAMES = ("sandbox_card", "sandbox_bank")
"""Every provider the tenant's chart has a clearing account for."""


class AccountCode(enum.IntEnum):
    """The ledger `code` of each kind of account."""

    USER_WALLET = 1001
    MERCHANT_WALLET = 1002
    PROVIDER_CLEARING = 2001
    FEE_REVENUE = 3001
    FX_POSITION = FX_POSITION_ACCOUNT_CODE
    """3002, fx's own constant: FX conversions post through this account."""
    SUSPENSE = 3003
    CHARGEBACK_LOSSES = 3004


class TransferCode(enum.IntEnum):
    """The ledger `code` of each kind of transfer a payment causes."""

    TOP_UP = 101
    WITHDRAWAL = 102
    P2P = 103
    MERCHANT_PAYMENT = 104
    REFUND = 105
    FEE = 106
    DISPUTE = 107
    CHARGEBACK_LOSS = 108
    SPLIT = 109
    FEE_RETURN = 110
    """Fees returned to the merchant with a refund (fee revenue → merchant wallet)."""


class OwnerKind(enum.StrEnum):
    USER = "user"
    MERCHANT = "merchant"


class SystemRole(enum.StrEnum):
    FEE_REVENUE = "fee_revenue"
    FX_POSITION = FX_POSITION_NAME
    SUSPENSE = "suspense"
    CHARGEBACK_LOSSES = "chargeback_losses"


_ROLE_CODES = {
    SystemRole.FEE_REVENUE: AccountCode.FEE_REVENUE,
    SystemRole.FX_POSITION: AccountCode.FX_POSITION,
    SystemRole.SUSPENSE: AccountCode.SUSPENSE,
    SystemRole.CHARGEBACK_LOSSES: AccountCode.CHARGEBACK_LOSSES,
}


@dataclass(frozen=True, slots=True)
class ChartEntry:
    """One system account of a tenant's chart in one currency."""

    name: str
    """`fee_revenue`, `clearing:sandbox_card`, …"""
    account: NewAccount


def system_account_id(ledger_tenant_id: uuid.UUID, *, name: str, currency: str) -> uuid.UUID:
    return uuid.uuid5(ledger_tenant_id, f"system:{name}:{currency}")


def clearing_account_id(ledger_tenant_id: uuid.UUID, *, provider: str, currency: str) -> uuid.UUID:
    return system_account_id(ledger_tenant_id, name=f"clearing:{provider}", currency=currency)


def wallet_account_id(
    ledger_tenant_id: uuid.UUID, *, owner_kind: OwnerKind, owner_id: uuid.UUID, currency: str
) -> uuid.UUID:
    return uuid.uuid5(ledger_tenant_id, f"wallet:{owner_kind.value}:{owner_id.hex}:{currency}")


def wallet_account(
    ledger_tenant_id: uuid.UUID, *, owner_kind: OwnerKind, owner_id: uuid.UUID, currency: str
) -> NewAccount:
    """A wallet's account: the ledger itself refuses to let it go below zero."""
    code = AccountCode.USER_WALLET if owner_kind is OwnerKind.USER else AccountCode.MERCHANT_WALLET
    return NewAccount(
        id=wallet_account_id(
            ledger_tenant_id, owner_kind=owner_kind, owner_id=owner_id, currency=currency
        ),
        tenant_id=ledger_tenant_id,
        ledger=currency,
        code=int(code),
        flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        owner_ref=f"{owner_kind.value}:{owner_id.hex}",
    )


def chart_of_accounts(ledger_tenant_id: uuid.UUID, currency: str) -> list[ChartEntry]:
    """The tenant's system accounts in `currency`: a clearing account per provider (what
    the provider owes us, a debit balance), fee revenue, the FX position (fx's definition:
    conversions post through it), suspense for
    money not yet explained, and chargeback losses (disputes lost beyond what the
    receiving wallet could pay)."""
    names: list[tuple[str, AccountCode]] = [
        (f"clearing:{provider}", AccountCode.PROVIDER_CLEARING) for provider in PROVIDER_NAMES
    ]
    names += [(role.value, code) for role, code in _ROLE_CODES.items()]
    return [
        ChartEntry(
            name=name,
            account=position_account(tenant_id=ledger_tenant_id, currency=currency)
            if name == SystemRole.FX_POSITION
            else NewAccount(
                id=system_account_id(ledger_tenant_id, name=name, currency=currency),
                tenant_id=ledger_tenant_id,
                ledger=currency,
                code=int(code),
                owner_ref=f"system:{name}",
            ),
        )
        for name, code in names
    ]
