"""Fee lines as ledger transfers: one transfer per line, with ids derived from the payment.

A flow that charges fees posts each `FeeLine` as its own transfer from the account that
pays the fee to the tenant's fee revenue account, so a statement shows every fee apart from
the payment, and each transfer's `user_data` names the rule that charged it. The ids are
derived from the payment id and the line's position and rule, so a retried flow records
each fee once.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal

from billfold.kit.errors import invariant
from billfold.ledger.types import USER_DATA_LENGTH_MAX, NewTransfer, TransferFlags
from billfold.payments.fees.types import FeeQuote

__all__ = ["FEES_NAMESPACE", "FEE_TRANSFER_CODE", "fee_transfer_id", "fee_transfers"]

FEES_NAMESPACE: Final = uuid.UUID("5f3c2a7e-91d4-4b8e-a0c6-2d7e4f1b9c35")
"""Fixed forever: fee transfer ids derive from it."""
FEE_TRANSFER_CODE: Final = 9200


def fee_transfer_id(*, payment_id: uuid.UUID, index: int, rule: str) -> uuid.UUID:
    return uuid.uuid5(FEES_NAMESPACE, f"{payment_id}:{index}:{rule}")


def fee_transfers(
    quote: FeeQuote,
    *,
    tenant_id: uuid.UUID,
    payment_id: uuid.UUID,
    payer_account_id: uuid.UUID,
    revenue_account_id: uuid.UUID,
    linked: Literal["none", "all", "all_but_last"] = "none",
    code: int = FEE_TRANSFER_CODE,
) -> list[NewTransfer]:
    """The transfers that post `quote`'s lines. `linked` chooses the LINKED flags: `all`
    when the flow appends more transfers of its chain after these, `all_but_last` when
    these close the chain, `none` for independent transfers."""
    invariant(payer_account_id != revenue_account_id, "a fee moves between two accounts")
    transfers: list[NewTransfer] = []
    for index, line in enumerate(quote.lines):
        invariant(line.amount_minor > 0, "fee lines are positive")
        is_last = index == len(quote.lines) - 1
        flagged = linked == "all" or (linked == "all_but_last" and not is_last)
        transfers.append(
            NewTransfer(
                id=fee_transfer_id(payment_id=payment_id, index=index, rule=line.rule),
                tenant_id=tenant_id,
                debit_account_id=payer_account_id,
                credit_account_id=revenue_account_id,
                amount=line.amount_minor,
                ledger=line.currency,
                code=code,
                flags=TransferFlags.LINKED if flagged else TransferFlags.NONE,
                user_data=f"fee:{line.rule}"[:USER_DATA_LENGTH_MAX],
            )
        )
    return transfers
