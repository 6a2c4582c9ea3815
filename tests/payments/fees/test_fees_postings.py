"""Fee lines posted as their own transfers against a real ledger, on both backends."""

from __future__ import annotations

import uuid

import pytest

from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewAccount, NewTransfer, TransferFlags
from billfold.payments.fees.postings import FEE_TRANSFER_CODE, fee_transfers
from billfold.payments.fees.types import FeeLine, FeeQuote

pytestmark = pytest.mark.anyio

QUOTE = FeeQuote(
    lines=(
        FeeLine(
            rule="card_eu_tier_1", description="1.40% + 0.25 EUR", amount_minor=165, currency="EUR"
        ),
        FeeLine(rule="fx_markup", description="0.50%", amount_minor=50, currency="EUR"),
    )
)


async def test_each_line_is_its_own_transfer_and_a_retry_records_nothing_twice(
    ledger: Ledger,
) -> None:
    tenant_id = uuid.uuid4()
    merchant, revenue, bank = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts(
        [
            NewAccount(id=i, tenant_id=tenant_id, ledger="EUR", code=1)
            for i in (merchant, revenue, bank)
        ]
    )
    payment_id = uuid.uuid4()
    payment = NewTransfer(
        id=payment_id,
        tenant_id=tenant_id,
        debit_account_id=bank,
        credit_account_id=merchant,
        amount=100_00,
        ledger="EUR",
        code=1,
        flags=TransferFlags.LINKED,
    )
    fees = fee_transfers(
        QUOTE,
        tenant_id=tenant_id,
        payment_id=payment_id,
        payer_account_id=merchant,
        revenue_account_id=revenue,
        linked="all_but_last",
    )
    assert [t.flags for t in fees] == [TransferFlags.LINKED, TransferFlags.NONE]
    assert [t.user_data for t in fees] == ["fee:card_eu_tier_1", "fee:fx_markup"]
    results = await ledger.submit([payment, *fees])
    assert [r.status for r in results] == [CreateTransferStatus.OK] * 3
    again = fee_transfers(
        QUOTE,
        tenant_id=tenant_id,
        payment_id=payment_id,
        payer_account_id=merchant,
        revenue_account_id=revenue,
        linked="all_but_last",
    )
    assert [r.status for r in await ledger.submit([payment, *again])] == [
        CreateTransferStatus.EXISTS
    ] * 3
    account = await ledger.get_account(tenant_id=tenant_id, account_id=revenue)
    assert account.credits_posted == 215
    transfers = await ledger.lookup_transfers(tenant_id=tenant_id, ids=[t.id for t in fees])
    assert {t.code for t in transfers} == {FEE_TRANSFER_CODE}


def test_linking_choices() -> None:
    ids = {
        "tenant_id": uuid.uuid4(),
        "payment_id": uuid.uuid4(),
        "payer_account_id": uuid.uuid4(),
        "revenue_account_id": uuid.uuid4(),
    }
    assert [t.flags for t in fee_transfers(QUOTE, **ids)] == [TransferFlags.NONE] * 2
    assert [t.flags for t in fee_transfers(QUOTE, **ids, linked="all")] == [
        TransferFlags.LINKED
    ] * 2
    assert fee_transfers(FeeQuote(), **ids) == []
