"""FX tables: quotes (with the conversion that claimed or used them) and per-tenant FX
settings.

Only `billfold.fx` writes them. Times are integer nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["FxQuoteRow", "FxTenantSettingsRow"]


class FxQuoteRow(Base):
    """A rate locked for one conversion until `expires_at`; used at most once.

    open (`claimed_at` and `used_at` NULL) → claimed (`claimed_at` and the two accounts set:
    a conversion between those accounts is writing its legs) → used (`used_at` set,
    `claimed_at` NULL). A claim the attempt could not finish (a crash, a ledger error) is
    finished by a retry between the same accounts, or, past its lease, completed (its legs
    are in the ledger) or given back (they are not) by recovery."""

    __tablename__ = "fx_quotes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `fxq_<hex>` in the API; the conversion's transfer ids derive from it."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The ledger tenant (tenant and mode) the quote belongs to."""
    sell_currency: Mapped[str] = mapped_column(String(3))
    """ISO 4217 code the customer sells."""
    buy_currency: Mapped[str] = mapped_column(String(3))
    """ISO 4217 code the customer buys."""
    sell_amount: Mapped[int] = mapped_column(BigInteger)
    """Minor units of the sell currency debited from the customer."""
    buy_amount: Mapped[int] = mapped_column(BigInteger)
    """Minor units of the buy currency credited to the customer."""
    fixed_side: Mapped[str] = mapped_column(String(4))
    """sell or buy: which amount the client asked for (the other was computed)."""
    mid_rate: Mapped[str] = mapped_column(String(48))
    """The reference cross rate (buy per sell), 12 significant digits, for display."""
    rate: Mapped[str] = mapped_column(String(48))
    """The locked customer rate (buy per sell) the amounts were computed from, exactly."""
    spread_bps: Mapped[int] = mapped_column(Integer)
    """The spread applied, in basis points."""
    rates_date: Mapped[str] = mapped_column(String(10))
    """The reference rates' date, YYYY-MM-DD."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the quote was made, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """After this, ns since the epoch, the quote cannot be used."""
    claimed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a conversion between `sell_account_id` and `buy_account_id` claimed it and
    began writing its legs; NULL while open and once used."""
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a conversion (or a payment's reservation) used it; NULL while unused."""
    sell_account_id: Mapped[uuid.UUID | None] = mapped_column()
    """The ledger account debited by the conversion; NULL while open."""
    buy_account_id: Mapped[uuid.UUID | None] = mapped_column()
    """The ledger account credited by the conversion; NULL while open."""

    __table_args__ = (
        CheckConstraint("fixed_side IN ('sell', 'buy')", name="fixed_side"),
        CheckConstraint("sell_amount > 0 AND buy_amount > 0", name="amounts_positive"),
        Index("ix_fx_quotes_tenant_id_id", "tenant_id", "id"),
        Index(
            "ix_fx_quotes_claimed_at",
            "claimed_at",
            postgresql_where=text("claimed_at IS NOT NULL"),
            sqlite_where=text("claimed_at IS NOT NULL"),
        ),
    )


class FxTenantSettingsRow(Base):
    """A ledger tenant's FX settings; absent means the platform defaults."""

    __tablename__ = "fx_tenant_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """The ledger tenant (tenant and mode)."""
    spread_bps: Mapped[int] = mapped_column(Integer)
    """The spread every new quote applies, in basis points."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When it was last set, ns since the epoch."""

    __table_args__ = (CheckConstraint("spread_bps >= 0 AND spread_bps <= 2000", name="spread"),)
