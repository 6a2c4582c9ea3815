"""Property: however a capture is refunded — in any number of parts, some failing after
others were priced — the fee returns are never negative and never add up to more than the
proportional part of the capture fees; refunded whole with none failing, exactly that."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from billfold.payments.flows.refunds import fee_return
from billfold.payments.models import Payment, PaymentFee
from billfold.payments.steps import step_id

_OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["price", "fail", "succeed"]), st.integers(1, 10**12)),
    max_size=12,
)


@settings(max_examples=500)
@given(
    captured=st.integers(1, 10**12),
    lines=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**6)), max_size=3),
    operations=_OPERATIONS,
)
def test_fee_returns_never_exceed_the_proportional_fees(
    captured: int, lines: list[tuple[int, int]], operations: list[tuple[str, int]]
) -> None:
    payment = Payment(id=uuid.uuid4(), captured_amount=captured)
    fees = [
        PaymentFee(
            transfer_id=step_id(payment.id, f"capture:fee:{index}"),
            amount=amount,
            fixed_amount=min(fixed, amount),
        )
        for index, (amount, fixed) in enumerate(lines)
    ]
    proportional = sum(fee.amount - fee.fixed_amount for fee in fees)
    refunded = 0  # what refunds not failed reserve, as `payments.refunded_amount`
    pending: list[tuple[int, int]] = []  # (amount, fee returned)
    settled: list[tuple[int, int]] = []

    def price(amount: int) -> int:
        returned = fee_return(
            payment,
            fees,
            refunded_before=refunded,
            already_returned=sum(r for _, r in pending + settled),
        )(amount)
        assert returned >= 0
        return returned

    for operation, value in operations:
        if operation == "price" and refunded < captured:
            amount = 1 + value % (captured - refunded)
            pending.append((amount, price(amount)))
            refunded += amount
        elif operation != "price" and pending:
            amount, returned = pending.pop(value % len(pending))
            if operation == "fail":
                refunded -= amount
            else:
                settled.append((amount, returned))
        assert sum(r for _, r in pending + settled) <= proportional
    settled += pending
    pending = []
    if refunded < captured:
        settled.append((captured - refunded, price(captured - refunded)))
    total = sum(r for _, r in settled)
    assert total <= proportional
    if all(operation != "fail" for operation, _ in operations):
        assert total == proportional
