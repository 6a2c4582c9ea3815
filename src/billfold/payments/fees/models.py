"""The fee schedules table. Only `billfold.payments.fees` writes it.

Times are integer nanoseconds since the Unix epoch, like the ledger's.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["DEFAULT_SCOPE_KEY", "SCHEDULE_NAME_LENGTH_MAX", "FeeScheduleRow"]

DEFAULT_SCOPE_KEY = "default"
"""`scope_key` of a tenant's default schedule; a merchant's is the merchant id's hex."""
SCHEDULE_NAME_LENGTH_MAX = 100


class FeeScheduleRow(Base):
    """One schedule: a tenant's default (no merchant) or one merchant's, replaced whole."""

    __tablename__ = "fees_schedules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `fsc_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    """The ledger tenant (tenant and mode, `Principal.ledger_tenant_id`) it prices for."""
    merchant_id: Mapped[uuid.UUID | None] = mapped_column()
    """The merchant it prices for; NULL for the tenant's default schedule."""
    scope_key: Mapped[str] = mapped_column(String(32))
    """`default` or the merchant id's hex: unique per tenant (NULLs would not be)."""
    name: Mapped[str] = mapped_column(String(SCHEDULE_NAME_LENGTH_MAX))
    """What the tenant calls the schedule."""
    version: Mapped[int] = mapped_column(Integer)
    """1 at creation, plus one on each replacement."""
    rules: Mapped[str] = mapped_column(Text)
    """The rules as canonical JSON (`engine.schedule_to_json`)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the schedule was created, ns since the epoch."""
    updated_at: Mapped[int] = mapped_column(BigInteger)
    """When the schedule was last replaced, ns since the epoch."""

    __table_args__ = (
        UniqueConstraint("tenant_id", "scope_key", name="uq_fees_schedules_tenant_id_scope_key"),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_fees_schedules_tenant_id_id", "tenant_id", "id"),
    )
