"""The FX position accounts: one per ledger tenant and currency, the tenant's chart account
``fx_position`` (code 3002). Pure functions, so that wallets' chart of accounts and the fx
conversions name the same account from one definition (fx may not import wallets; the chart
imports this).

The id is ``uuid5(ledger tenant, "system:fx_position:<currency>")``, the chart's scheme for
every system account (``wallets.accounts.system_account_id``; a test pins the two together),
so a tenant whose chart is already open converts through the account it already has.

Before, conversions posted through accounts of their own (code 9100, owner ``fx:position``,
ids under :data:`FX_NAMESPACE`): :func:`legacy_position_account_id` names them, so existing
balances can be found; nothing posts to them any more.
"""

from __future__ import annotations

import uuid
from typing import Final

from billfold.ledger.types import NewAccount

__all__ = [
    "FX_NAMESPACE",
    "FX_POSITION_ACCOUNT_CODE",
    "FX_POSITION_NAME",
    "LEGACY_FX_POSITION_ACCOUNT_CODE",
    "POSITION_ACCOUNT_CODES",
    "legacy_position_account_id",
    "position_account",
    "position_account_id",
]

FX_NAMESPACE: Final = uuid.UUID("0d7b4a52-3c1e-4f5a-9a41-6f0e2c8b7d13")
"""Fixed forever: conversion transfer ids (and the legacy position accounts) derive from it."""
FX_POSITION_NAME: Final = "fx_position"
"""The position's name in the tenant's chart of system accounts."""
FX_POSITION_ACCOUNT_CODE: Final = 3002
"""The chart's ``fx_position`` code (``wallets.accounts.AccountCode.FX_POSITION``)."""
LEGACY_FX_POSITION_ACCOUNT_CODE: Final = 9100
"""The code of the position accounts conversions used before they used the chart's."""
POSITION_ACCOUNT_CODES: Final = frozenset(
    {FX_POSITION_ACCOUNT_CODE, LEGACY_FX_POSITION_ACCOUNT_CODE}
)
"""Accounts never converted from or to: the positions, current and legacy."""


def position_account_id(*, tenant_id: uuid.UUID, currency: str) -> uuid.UUID:
    """The ``fx_position`` account of ledger tenant ``tenant_id`` in ``currency``."""
    return uuid.uuid5(tenant_id, f"system:{FX_POSITION_NAME}:{currency}")


def position_account(*, tenant_id: uuid.UUID, currency: str) -> NewAccount:
    """The position account to open, exactly as the chart opens it (opening it twice, from
    either side, is answered ``exists``): no balance limit, since per currency the position
    holds the other side of every conversion."""
    return NewAccount(
        id=position_account_id(tenant_id=tenant_id, currency=currency),
        tenant_id=tenant_id,
        ledger=currency,
        code=FX_POSITION_ACCOUNT_CODE,
        owner_ref=f"system:{FX_POSITION_NAME}",
    )


def legacy_position_account_id(*, tenant_id: uuid.UUID, currency: str) -> uuid.UUID:
    """The code-9100 position account conversions used before (see the module's note)."""
    return uuid.uuid5(FX_NAMESPACE, f"position:{tenant_id}:{currency}")
