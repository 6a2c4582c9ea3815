"""Payments' tables: payments and their state history, the ledger transfers and fees they
caused, refunds, disputes, money requests and split rules. Times are ns since the epoch;
amounts are integers in the currency's minor unit (at most 2**63 - 1 here)."""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "Dispute",
    "MoneyRequest",
    "MonthlyVolume",
    "Payment",
    "PaymentFee",
    "PaymentStateChange",
    "PaymentTransfer",
    "Refund",
    "SplitRule",
]

_MODE = "mode IN ('test', 'live')"


class Payment(Base):
    """One money movement of any kind, advanced by its state machine (`payments.states`)."""

    __tablename__ = "payments_payments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `pay_<hex>` in the API; the namespace of its ledger transfer ids."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    kind: Mapped[str] = mapped_column(String(16))
    """top_up, withdrawal, p2p or merchant."""
    state: Mapped[str] = mapped_column(String(24))
    """The current state; every change is in payments_state_history."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """The amount asked for, minor units."""
    currency: Mapped[str] = mapped_column(String(12))
    """The ledger of every transfer it causes."""
    captured_amount: Mapped[int] = mapped_column(BigInteger)
    """What reached the payee (merchant payments: the capture; others: the amount)."""
    refunded_amount: Mapped[int] = mapped_column(BigInteger)
    """Sum of succeeded and pending refunds."""
    payer_user_id: Mapped[uuid.UUID | None] = mapped_column()
    """The end user paying, when one is."""
    payee_user_id: Mapped[uuid.UUID | None] = mapped_column()
    """The end user receiving (top-ups, P2P)."""
    merchant_id: Mapped[uuid.UUID | None] = mapped_column()
    """The merchant receiving (merchant payments)."""
    debit_account_id: Mapped[uuid.UUID | None] = mapped_column()
    """The ledger account the money leaves."""
    credit_account_id: Mapped[uuid.UUID | None] = mapped_column()
    """The ledger account the money reaches."""
    provider: Mapped[str | None] = mapped_column(String(32))
    """sandbox_card or sandbox_bank, for top-ups and withdrawals."""
    method: Mapped[str | None] = mapped_column(String(16))
    """card, bank_transfer or wallet."""
    instrument: Mapped[str | None] = mapped_column(String(12))
    """The last four characters of the card or account, never more."""
    provider_reference: Mapped[str | None] = mapped_column(String(64))
    """The provider's id of the charge or payout."""
    reference: Mapped[str | None] = mapped_column(String(128))
    """The merchant's own reference."""
    metadata_json: Mapped[str | None] = mapped_column(Text)
    """The merchant's metadata, a JSON object."""
    capture_mode: Mapped[str] = mapped_column(String(16))
    """automatic or manual (merchant payments)."""
    split_rule_id: Mapped[uuid.UUID | None] = mapped_column()
    """The rule that shares the captured amount among recipients."""
    failure_code: Mapped[str | None] = mapped_column(String(64))
    """Why it failed, when it did."""
    next_action_url: Mapped[str | None] = mapped_column(String(256))
    """Where the payer completes a challenge (requires_action)."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When an unpaid merchant payment can no longer be authorized."""
    authorization_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When an authorized merchant payment's hold is voided unless captured."""
    source_currency: Mapped[str | None] = mapped_column(String(12))
    """Cross-currency payments: the payer's currency, converted into `currency`."""
    source_amount: Mapped[int | None] = mapped_column(BigInteger)
    """Cross-currency payments: what the payer paid, minor units of `source_currency`."""
    fx_quote_id: Mapped[uuid.UUID | None] = mapped_column()
    """Cross-currency payments: the FX quote (locked rate) the conversion used."""
    capture_claim: Mapped[int | None] = mapped_column(BigInteger)
    """An authorized merchant payment's capture under way: the amount claimed, its fees
    priced and recorded, before the ledger moves it (None otherwise); only that amount can
    be captured until it is recorded, or the hold is voided or expires."""
    capture_claimed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When `capture_claim` was made (recovery finishes claims older than its grace)."""
    spent_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it counts toward its payer's spending limits: the limit check that admitted it
    (P2P and withdrawals: their creation; merchant payments: the payer's authorization,
    set with the payer when the limit is checked, cleared again if the hold fails)."""
    risk_decision_id: Mapped[uuid.UUID | None] = mapped_column()
    """The risk decision that admitted or held it (`rdc_…`); None when no risk engine is
    configured (merchant payments: the payer's authorization's decision)."""
    parked_instrument: Mapped[bytes | None] = mapped_column(LargeBinary)
    """A top-up parked for risk review: its card or account number, sealed with the
    keyring until the provider is charged (cleared then, or when it fails)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was created."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When its state last changed, or, for a top-up or withdrawal waiting on its provider's
    outcome, when recovery last asked the provider's status (`claim_reconciliation`)."""

    __table_args__ = (
        CheckConstraint(_MODE, name="mode"),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("refunded_amount <= captured_amount", name="refunds"),
        Index("ix_payments_payments_tenant_id_mode_id", "tenant_id", "mode", "id"),
        Index("ix_payments_payments_payer_user_id_spent_at", "payer_user_id", "spent_at"),
        Index("ix_payments_payments_state_created_at", "state", "created_at"),
        Index("ix_payments_payments_state_expires_at", "state", "expires_at"),
        Index(
            "ix_payments_payments_state_authorization_expires_at",
            "state",
            "authorization_expires_at",
        ),
        Index(
            "ix_payments_payments_capture_claimed_at",
            "capture_claimed_at",
            postgresql_where=text("capture_claim IS NOT NULL"),
            sqlite_where=text("capture_claim IS NOT NULL"),
        ),
    )


class PaymentStateChange(Base):
    """One transition of a payment, in order."""

    __tablename__ = "payments_state_history"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7 (orders the changes)."""
    payment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The payment."""
    from_state: Mapped[str | None] = mapped_column(String(24))
    """NULL for the creation."""
    to_state: Mapped[str] = mapped_column(String(24))
    """The new state."""
    reason: Mapped[str | None] = mapped_column(String(128))
    """Why: a failure code, a notification id, …"""
    at: Mapped[int] = mapped_column(BigInteger)
    """When."""


class PaymentTransfer(Base):
    """A ledger transfer a payment caused, and the step that caused it."""

    __tablename__ = "payments_transfers"

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The ledger transfer id (derived from the payment id and the step)."""
    payment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The payment."""
    step: Mapped[str] = mapped_column(String(64))
    """hold, capture, void, credit, fee:0, refund:<id>, …"""
    recorded_at: Mapped[int] = mapped_column(BigInteger)
    """When Billfold learnt the ledger applied it."""


class PaymentFee(Base):
    """One fee line charged on a payment, as the fee engine explained it."""

    __tablename__ = "payments_fees"

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The ledger transfer that moved the fee to fee revenue."""
    payment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The payment."""
    rule: Mapped[str] = mapped_column(String(64))
    """The fee schedule rule."""
    description: Mapped[str] = mapped_column(String(200))
    """What the rule says, for people."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """The fee, minor units (negative: fees returned with a refund)."""
    currency: Mapped[str] = mapped_column(String(12))
    """The fee's currency."""
    fixed_amount: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """The part of `amount` not proportional to the payment (fixed part, minimum): kept
    when the payment is refunded; the rest is returned pro rata."""


class Refund(Base):
    """Money returned to the payer of a captured merchant payment."""

    __tablename__ = "payments_refunds"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `ref_<hex>`; its ledger transfer id derives from it."""
    payment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The refunded payment."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """Minor units."""
    state: Mapped[str] = mapped_column(String(16))
    """pending, in_review (held for a risk analyst), succeeded or failed."""
    reason: Mapped[str | None] = mapped_column(String(200))
    """The merchant's reason."""
    failure_code: Mapped[str | None] = mapped_column(String(64))
    """Why it failed (the ledger's refusal)."""
    risk_decision_id: Mapped[uuid.UUID | None] = mapped_column()
    """The risk decision that admitted or held it; None when no risk engine is configured."""
    fee_returned: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """The capture fees returned to the merchant with this refund (pro rata, the
    proportional part only), minor units; fixed when the refund is asked for."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was asked for."""

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("state IN ('pending', 'in_review', 'succeeded', 'failed')", name="state"),
    )


class Dispute(Base):
    """A dispute (chargeback) of a payment, opened by the provider or the tenant."""

    __tablename__ = "payments_disputes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `dsp_<hex>`; its ledger transfer ids derive from it."""
    payment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The disputed payment."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """The disputed amount, minor units."""
    held_amount: Mapped[int] = mapped_column(BigInteger)
    """How much of it the receiving wallet could hold while open."""
    state: Mapped[str] = mapped_column(String(16))
    """opening, open, winning or losing (an outcome claimed, its ledger steps under way),
    won or lost."""
    opened_by: Mapped[str] = mapped_column(String(16))
    """provider or tenant."""
    provider_dispute_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The provider's id, for disputes it opened."""
    reason: Mapped[str | None] = mapped_column(String(200))
    """Why the payer disputes."""
    evidence_json: Mapped[str] = mapped_column(Text)
    """A JSON list of evidence entries (kind, description, at)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was opened."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When it last changed."""

    __table_args__ = (
        CheckConstraint(
            "state IN ('opening', 'open', 'winning', 'losing', 'won', 'lost')", name="state"
        ),
    )


class MoneyRequest(Base):
    """A payee asks a payer for money; the payer approves (a P2P payment) or declines."""

    __tablename__ = "payments_money_requests"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `req_<hex>`."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    payee_user_id: Mapped[uuid.UUID] = mapped_column()
    """Who asks."""
    payer_user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """Who is asked."""
    amount: Mapped[int] = mapped_column(BigInteger)
    """Minor units."""
    currency: Mapped[str] = mapped_column(String(12))
    """The currency."""
    note: Mapped[str | None] = mapped_column(String(200))
    """The payee's message."""
    state: Mapped[str] = mapped_column(String(16))
    """pending, approved, declined or expired."""
    payment_id: Mapped[uuid.UUID | None] = mapped_column()
    """The P2P payment that paid it."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """After this it can no longer be approved."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was made."""

    __table_args__ = (
        CheckConstraint(_MODE, name="mode"),
        CheckConstraint("amount > 0", name="amount"),
    )


class SplitRule(Base):
    """How a captured payment is shared among recipients, in basis points."""

    __tablename__ = "payments_split_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `spl_<hex>`."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The identity tenant."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live."""
    name: Mapped[str] = mapped_column(String(100))
    """For people."""
    shares_json: Mapped[str] = mapped_column(Text)
    """A JSON list of {"merchant_id": hex, "bps": int}; the rest stays with the payee."""
    levels: Mapped[int] = mapped_column(Integer)
    """How deep recipients' own rules are applied (1 = this rule only)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was made."""

    __table_args__ = (CheckConstraint(_MODE, name="mode"),)


class MonthlyVolume(Base):
    """Captured volume per calendar month (UTC), kept as payments succeed, for fee tiers:
    rows per ledger tenant, scope (the tenant, or one merchant), currency and shard."""

    __tablename__ = "payments_monthly_volume"

    ledger_tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The tenant in one mode (fee schedules' scope)."""
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    """A merchant id's hex (its captured payments), or `tenant` (payments without a
    merchant: top-ups, withdrawals, P2P)."""
    currency: Mapped[str] = mapped_column(String(12), primary_key=True)
    """The payments' currency."""
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    """YYYY-MM, UTC."""
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    """0 to `VOLUME_SHARDS` - 1, from the payment id: concurrent payments of one scope
    mostly update different rows (no single hot row); the volume is their sum."""
    volume: Mapped[int] = mapped_column(BigInteger)
    """Sum of captured (or succeeded) amounts, minor units."""
