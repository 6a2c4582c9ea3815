"""Split payments: a captured amount shared among recipients by the tenant's rules.

A rule lists recipient merchants with basis points; each gets `amount * bps // 10000`
from the payee's wallet, and the rest stays with the payee. Multi-level revenue sharing:
a recipient whose merchant has its own rule passes shares of its part on, up to the rule's
`levels`. Every share is a transfer in the capture's linked chain, so all happen or none.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import format_id, new_id
from billfold.ledger.types import NewTransfer
from billfold.payments.errors import InvalidSplitRule
from billfold.payments.models import Payment, SplitRule
from billfold.payments.repository import PaymentRepository
from billfold.payments.steps import step_id
from billfold.wallets.accounts import OwnerKind, TransferCode, wallet_account_id
from billfold.wallets.repository import WalletRepository
from billfold.wallets.service import ledger_tenant_of

__all__ = ["SHARES_MAX", "Share", "create_split_rule", "split_shares", "valid_rule"]

SHARES_MAX = 50
"""Most transfers one capture's splits may cause, over every level."""
BPS_TOTAL = 10_000


@dataclass(frozen=True, slots=True)
class Share:
    step: str
    transfer: NewTransfer
    merchant_id: uuid.UUID


async def create_split_rule(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    name: str,
    shares: list[tuple[uuid.UUID, int]],
    levels: int,
) -> SplitRule:
    if not shares or sum(bps for _, bps in shares) > BPS_TOTAL:
        raise InvalidSplitRule("Shares are 1 or more recipients totalling at most 10000 bps.")
    wallets = WalletRepository(session)
    for merchant_id, _ in shares:
        if (
            await wallets.get_merchant(tenant_id=tenant_id, mode=mode, merchant_id=merchant_id)
            is None
        ):
            raise InvalidSplitRule(f"No merchant {format_id('mer', merchant_id)}.")
    rule = SplitRule(
        id=new_id(),
        tenant_id=tenant_id,
        mode=mode,
        name=name,
        shares_json=json.dumps([{"merchant_id": m.hex, "bps": bps} for m, bps in shares]),
        levels=levels,
        created_at=time.time_ns(),
    )
    await PaymentRepository(session).add(rule)
    return rule


async def valid_rule(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, rule_id: uuid.UUID
) -> SplitRule:
    rule = await PaymentRepository(session).get_split_rule(
        tenant_id=tenant_id, mode=mode, rule_id=rule_id
    )
    if rule is None:
        raise InvalidSplitRule("No such split rule.")
    return rule


async def split_shares(session: AsyncSession, *, payment: Payment, amount: int) -> list[Share]:
    """The share transfers of `amount` of a captured `payment` (none without a rule)."""
    if payment.split_rule_id is None or payment.merchant_id is None:
        return []
    tenant, mode = payment.tenant_id, payment.mode
    root = await valid_rule(session, tenant_id=tenant, mode=mode, rule_id=payment.split_rule_id)
    ledger_tenant = ledger_tenant_of(tenant, mode)
    wallets = WalletRepository(session)
    queue: deque[tuple[uuid.UUID, SplitRule, int, int]] = deque(
        [(payment.merchant_id, root, amount, 1)]
    )
    shares: list[Share] = []
    while queue:
        source, rule, part, level = queue.popleft()
        for entry in json.loads(rule.shares_json):
            recipient, bps = uuid.UUID(hex=entry["merchant_id"]), int(entry["bps"])
            value = part * bps // BPS_TOTAL
            if value == 0 or recipient == source:
                continue
            if len(shares) >= SHARES_MAX:
                raise InvalidSplitRule(f"A payment splits into at most {SHARES_MAX} shares.")
            step = f"split:{len(shares)}"
            shares.append(
                Share(
                    step,
                    _share_transfer(
                        payment,
                        ledger_tenant,
                        step,
                        source=source,
                        recipient=recipient,
                        amount=value,
                    ),
                    recipient,
                )
            )
            merchant = await wallets.get_merchant(
                tenant_id=tenant, mode=mode, merchant_id=recipient
            )
            if merchant is not None and merchant.split_rule_id is not None and level < root.levels:
                nested = await PaymentRepository(session).get_split_rule(
                    tenant_id=tenant, mode=mode, rule_id=merchant.split_rule_id
                )
                if nested is not None:
                    queue.append((recipient, nested, value, level + 1))
    return shares


def _share_transfer(
    payment: Payment,
    ledger_tenant: uuid.UUID,
    step: str,
    *,
    source: uuid.UUID,
    recipient: uuid.UUID,
    amount: int,
) -> NewTransfer:
    def account(merchant_id: uuid.UUID) -> uuid.UUID:
        return wallet_account_id(
            ledger_tenant,
            owner_kind=OwnerKind.MERCHANT,
            owner_id=merchant_id,
            currency=payment.currency,
        )

    return NewTransfer(
        id=step_id(payment.id, step),
        tenant_id=ledger_tenant,
        debit_account_id=account(source),
        credit_account_id=account(recipient),
        amount=amount,
        ledger=payment.currency,
        code=int(TransferCode.SPLIT),
        user_data=format_id("pay", payment.id),
    )
