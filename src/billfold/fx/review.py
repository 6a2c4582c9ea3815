"""Conversions past the risk decision (``billfold.risk.gate``).

Decided in a short unit of work before the legs move (the conversion has no row of its
own; the decision's reference is ``cnv_<quote id>``, one conversion per quote). Made with
an API key, a conversion has no end user to step up: a ``challenge`` is held for review.

- **allow**: :func:`billfold.fx.service.convert`, as before.
- **block**: nothing moves; 403 ``risk_blocked`` (the quote stays unused).
- **review**: the quote is marked used with the two accounts and the case opens in one
  unit of work, then both legs are placed as *pending* transfers (their usual ids, linked);
  :func:`settle_held_conversion` posts them (approve) or voids them (reject or expiry).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from billfold.fx.errors import (
    FxConversionRefused,
    FxInsufficientFunds,
    FxQuoteAlreadyUsed,
    FxQuoteExpired,
)
from billfold.fx.service import (
    FX_NAMESPACE,
    Conversion,
    _check_accounts,
    _ensure_positions,
    _landed,
    _legs,
    _submit_legs,
    convert,
    get_quote,
    recover_claim,
    release_quote,
)
from billfold.kit.db import UnitOfWork
from billfold.kit.ids import format_id
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewTransfer, TransferFlags
from billfold.risk.gate import RiskContext, judge, open_review
from billfold.risk.reviews import close_case
from billfold.risk.types import Action, Movement, MovementKind, RiskDecider

__all__ = [
    "CONVERSION_ID_PREFIX",
    "DecidedConversion",
    "convert_decided",
    "settle_held_conversion",
]

CONVERSION_ID_PREFIX = "cnv"
_DONE = (CreateTransferStatus.OK, CreateTransferStatus.EXISTS)
_SETTLED_OTHERWISE = (
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED,
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferStatus.PENDING_TRANSFER_EXPIRED,
)


@dataclass(frozen=True, slots=True)
class DecidedConversion:
    conversion: Conversion
    held: bool
    """The legs are pending until a risk analyst decides."""
    decision_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who converts: the identity tenant and mode (cases and decisions are theirs) and
    the ledger tenant (the tenant in that mode: quotes and accounts are its)."""

    tenant_id: uuid.UUID
    mode: str
    ledger_tenant_id: uuid.UUID


async def convert_decided(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    decider: RiskDecider | None,
    *,
    caller: Caller,
    quote_id: uuid.UUID,
    sell_account_id: uuid.UUID,
    buy_account_id: uuid.UUID,
    now_ns: int,
    context: RiskContext,
    hold_s: int,
) -> DecidedConversion:
    """Convert with `quote_id` past the risk decision (see the module)."""
    tenant_id = caller.ledger_tenant_id

    async def plain() -> Conversion:
        return await convert(
            unit_of_work,
            ledger,
            tenant_id=tenant_id,
            quote_id=quote_id,
            sell_account_id=sell_account_id,
            buy_account_id=buy_account_id,
            now_ns=now_ns,
        )

    if decider is None:
        return DecidedConversion(await plain(), False, None)
    async with unit_of_work.begin() as session:
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id)
    if quote.used_at is not None:
        raise FxQuoteAlreadyUsed("Each quote converts once; ask for a new quote.")
    accounts = await ledger.lookup_accounts(
        tenant_id=tenant_id, ids=[sell_account_id, buy_account_id]
    )
    _check_accounts(
        quote, accounts, sell_id=sell_account_id, buy_id=buy_account_id, same_owner=True
    )
    legs = _legs(quote, sell_account_id=sell_account_id, buy_account_id=buy_account_id)
    if await _landed(ledger, quote) is not None:
        # An earlier attempt moved the legs: the plain path records the quote (and refuses
        # this conversion if they moved between other accounts).
        return DecidedConversion(await plain(), False, None)
    if quote.claimed_at is not None:
        if (quote.sell_account_id, quote.buy_account_id) == (sell_account_id, buy_account_id):
            # The same conversion, allowed by an earlier decision (only an allowed one
            # claims) and interrupted before its legs: the plain path finishes it.
            return DecidedConversion(await plain(), False, None)
        quote = await recover_claim(
            unit_of_work, ledger, tenant_id=tenant_id, quote_id=quote_id, now_ns=now_ns
        )
        if quote.claimed_at is not None or quote.used_at is not None:
            raise FxQuoteAlreadyUsed("Another conversion is using this quote.")
    if now_ns >= quote.expires_at:
        raise FxQuoteExpired("The quote has expired; ask for a new one.")
    reference = format_id(CONVERSION_ID_PREFIX, quote_id)
    async with unit_of_work.begin() as session:
        verdict = await judge(
            session,
            decider,
            Movement(
                tenant_id=caller.tenant_id,
                mode=caller.mode,
                kind=MovementKind.FX_CONVERSION,
                amount=quote.sell_amount,
                currency=quote.sell_currency,
                occurred_at_ns=now_ns,
                payee=f"fx:{quote.buy_currency}",
                device_id=context.device_id,
                ip=context.ip,
                ip_country=context.ip_country,
                reference=reference,
            ),
            challengeable=False,
        )
        if verdict.action is Action.REVIEW:
            locked = await get_quote(
                session, tenant_id=tenant_id, quote_id=quote_id, for_update=True
            )
            if locked.used_at is not None or locked.claimed_at is not None:
                raise FxQuoteAlreadyUsed("Each quote converts once; ask for a new quote.")
            locked.used_at = now_ns
            locked.sell_account_id, locked.buy_account_id = sell_account_id, buy_account_id
            await open_review(session, verdict, reference=reference, hold_s=hold_s, at_ns=now_ns)
    if verdict.action is Action.BLOCK:
        raise verdict.blocked()
    if verdict.action is Action.ALLOW:
        conversion = await plain()
        return DecidedConversion(conversion, False, verdict.decision_id)
    await _ensure_positions(ledger, quote)
    try:
        await _submit_legs(ledger, _pending(legs))
    except (FxInsufficientFunds, FxConversionRefused):
        # Only a refusal of the whole chain gives the quote back. After any other error
        # (a connection lost) the pending legs may stand: the quote stays used and the
        # review open, for the analyst or the hold's expiry to settle them.
        async with unit_of_work.begin() as session:
            await release_quote(session, tenant_id=tenant_id, quote_id=quote_id)
            await close_case(
                session,
                tenant_id=caller.tenant_id,
                mode=caller.mode,
                reference=reference,
                state="expired",
                at_ns=now_ns,
            )
        raise
    async with unit_of_work.begin() as session:
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id)
    sell_leg, buy_leg = legs
    return DecidedConversion(Conversion(quote, sell_leg.id, buy_leg.id), True, verdict.decision_id)


def _pending(legs: list[NewTransfer]) -> list[NewTransfer]:
    return [replace(leg, flags=int(leg.flags) | int(TransferFlags.PENDING)) for leg in legs]


def _outcome_id(leg_id: uuid.UUID, outcome: str) -> uuid.UUID:
    return uuid.uuid5(FX_NAMESPACE, f"{leg_id}:{outcome}")


async def settle_held_conversion(
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    *,
    tenant_id: uuid.UUID,
    quote_id: uuid.UUID,
    approve: bool,
) -> None:
    """Post (approve) or void the pending legs of a held conversion; idempotent (the
    outcome's ids derive from the legs'), and a conversion settled the other way, or never
    held, is left alone. Approving places the legs first if a crash came before them."""
    async with unit_of_work.begin() as session:
        quote = await get_quote(session, tenant_id=tenant_id, quote_id=quote_id)
    if quote.sell_account_id is None or quote.buy_account_id is None:
        return  # not held (or given back): nothing to settle
    legs = _legs(quote, sell_account_id=quote.sell_account_id, buy_account_id=quote.buy_account_id)
    ids = [leg.id for leg in legs]
    transfers = await ledger.lookup_transfers(tenant_id=tenant_id, ids=ids)
    if any(not (transfer.flags & TransferFlags.PENDING) for transfer in transfers):
        return  # converted outright: never held
    found = {transfer.id for transfer in transfers}
    if approve and len(found) < len(legs):
        await _ensure_positions(ledger, quote)
        await _submit_legs(ledger, _pending(legs))
        found = set(ids)
    outcome = "post" if approve else "void"
    flag = TransferFlags.POST_PENDING if approve else TransferFlags.VOID_PENDING
    settle = [
        NewTransfer(
            id=_outcome_id(leg.id, outcome),
            tenant_id=tenant_id,
            pending_id=leg.id,
            flags=int(flag),
            user_data=leg.user_data,
        )
        for leg in legs
        if leg.id in found
    ]
    if not settle:
        return
    if approve:
        settle = [
            replace(t, flags=int(t.flags) | int(TransferFlags.LINKED)) for t in settle[:-1]
        ] + settle[-1:]
    results = await ledger.submit(settle)
    for result in results:
        if result.status in _DONE or result.status in _SETTLED_OTHERWISE:
            continue
        if result.status is CreateTransferStatus.LINKED_EVENT_FAILED:
            continue
        raise FxConversionRefused(
            f"The ledger refused: {result.status.value}.", ledger_status=result.status.value
        )
