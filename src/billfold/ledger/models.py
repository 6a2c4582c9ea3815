"""The ledger's tables. Only `billfold.ledger` writes them.

Amounts are exact integers up to 2^127-1 on every backend: NUMERIC(39, 0) on PostgreSQL and,
because SQLite integers stop at 2^63-1, 39-digit zero-padded text on SQLite (which still
sorts and compares correctly). Timestamps are nanoseconds since the epoch, assigned by the
ledger's clock (one row, locked by every writing transaction).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "AMOUNT_DIGITS",
    "Amount",
    "Base",
    "LedgerAccount",
    "LedgerAccountBalance",
    "LedgerClock",
    "LedgerPendingTransfer",
    "LedgerTransfer",
    "metadata",
]

AMOUNT_DIGITS = 39
"""Decimal digits of 2^127-1."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Amount(TypeDecorator[int]):
    """An exact non-negative integer up to 2^127-1 on PostgreSQL and SQLite alike."""

    impl = Numeric(AMOUNT_DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(AMOUNT_DIGITS))
        return dialect.type_descriptor(Numeric(AMOUNT_DIGITS, 0, asdecimal=True))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> object:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return f"{value:0{AMOUNT_DIGITS}d}"
        return value

    def process_result_value(self, value: object, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(str(value))


class Base(DeclarativeBase):
    metadata = metadata


class LedgerClock(Base):
    """The ledger's clock: the last timestamp it handed out. Locked by every write."""

    __tablename__ = "ledger_clock"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    """Always 1: there is one clock."""
    last_timestamp: Mapped[int] = mapped_column(BigInteger)
    """The last timestamp assigned to an account or transfer, ns since the epoch."""


class LedgerAccount(Base):
    """An account: where money is, in one asset, with its four balances."""

    __tablename__ = "ledger_accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """Chosen by the caller; creating the same account twice is idempotent."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    """The tenant that owns the account; nothing crosses tenants."""
    ledger: Mapped[str] = mapped_column(String(12))
    """The asset code: an ISO 4217 currency or a custom asset. Transfers stay in one ledger."""
    code: Mapped[int] = mapped_column(Integer)
    """The account type (chart-of-accounts code), 1..65535."""
    owner_ref: Mapped[str | None] = mapped_column(String(128))
    """Who the account belongs to, as another domain names it (a user, merchant, …)."""
    user_data: Mapped[str | None] = mapped_column(String(128))
    """Free data for the caller, at most 128 characters."""
    flags: Mapped[int] = mapped_column(Integer)
    """AccountFlags: debits/credits must not exceed, history."""
    status: Mapped[str] = mapped_column(String(8))
    """active, frozen or closed."""
    debits_pending: Mapped[int] = mapped_column(Amount)
    """Sum of pending debits not yet posted or voided."""
    debits_posted: Mapped[int] = mapped_column(Amount)
    """Sum of posted debits."""
    credits_pending: Mapped[int] = mapped_column(Amount)
    """Sum of pending credits not yet posted or voided."""
    credits_posted: Mapped[int] = mapped_column(Amount)
    """Sum of posted credits."""
    timestamp: Mapped[int] = mapped_column(BigInteger, unique=True)
    """When the ledger created the account, ns since the epoch."""

    __table_args__ = (
        CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status"),
        CheckConstraint("(flags & 3) <> 3", name="flags_exclusive"),
    )


class LedgerTransfer(Base):
    """A transfer: immutable once written (a database trigger refuses UPDATE and DELETE)."""

    __tablename__ = "ledger_transfers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """Chosen by the caller: the ledger's idempotency key."""
    tenant_id: Mapped[uuid.UUID]
    """The tenant that owns the transfer."""
    debit_account_id: Mapped[uuid.UUID]
    """The account debited."""
    credit_account_id: Mapped[uuid.UUID]
    """The account credited."""
    amount: Mapped[int] = mapped_column(Amount)
    """Minor units of the ledger's asset; for a post, the amount posted."""
    pending_id: Mapped[uuid.UUID | None]
    """For a post or void: the pending transfer it resolves (at most one resolution each)."""
    ledger: Mapped[str] = mapped_column(String(12))
    """The asset code, equal to both accounts'."""
    code: Mapped[int] = mapped_column(Integer)
    """Why the money moved (transfer type), 1..65535."""
    flags: Mapped[int] = mapped_column(Integer)
    """TransferFlags."""
    timeout_s: Mapped[int] = mapped_column(BigInteger)
    """For a pending transfer: seconds until it expires (0: never)."""
    user_data: Mapped[str | None] = mapped_column(String(128))
    """Free data for the caller, at most 128 characters."""
    timestamp: Mapped[int] = mapped_column(BigInteger, unique=True)
    """Assigned by the ledger, strictly increasing, ns since the epoch."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """For a pending transfer with a timeout: when it expires."""

    __table_args__ = (
        Index("ix_ledger_transfers_debit_account_id_timestamp", "debit_account_id", "timestamp"),
        Index("ix_ledger_transfers_credit_account_id_timestamp", "credit_account_id", "timestamp"),
        Index(
            "uq_ledger_transfers_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
            sqlite_where=text("pending_id IS NOT NULL"),
        ),
    )


class LedgerPendingTransfer(Base):
    """The state of each pending transfer (the transfer row itself never changes)."""

    __tablename__ = "ledger_pending_transfers"

    transfer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The pending transfer."""
    tenant_id: Mapped[uuid.UUID]
    """Its tenant."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it expires, or NULL for never."""
    status: Mapped[str] = mapped_column(String(8))
    """pending, posted, voided or expired."""

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name="status"),
        Index(
            "ix_ledger_pending_transfers_open_expires_at",
            "expires_at",
            postgresql_where=text("status = 'pending' AND expires_at IS NOT NULL"),
            sqlite_where=text("status = 'pending' AND expires_at IS NOT NULL"),
        ),
    )


class LedgerAccountBalance(Base):
    """An account's balances after each of its transfers (accounts with `history`)."""

    __tablename__ = "ledger_account_balances"

    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The account."""
    timestamp: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """The transfer's timestamp."""
    transfer_id: Mapped[uuid.UUID]
    """The transfer that produced these balances."""
    debits_pending: Mapped[int] = mapped_column(Amount)
    """Balance after the transfer."""
    debits_posted: Mapped[int] = mapped_column(Amount)
    """Balance after the transfer."""
    credits_pending: Mapped[int] = mapped_column(Amount)
    """Balance after the transfer."""
    credits_posted: Mapped[int] = mapped_column(Amount)
    """Balance after the transfer."""
