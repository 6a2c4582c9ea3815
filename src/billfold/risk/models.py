"""Risk's shared tables: every decision (with the features it saw) and the labels that
say, later, whether a movement was fraud.

Times are ns since the epoch; JSON columns hold compact JSON text (both backends).
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["RiskDecision", "RiskLabel"]


class RiskDecision(Base):
    """One decision on one movement attempt: what the engine saw, what it decided, why."""

    __tablename__ = "risk_decisions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rdc_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    kind: Mapped[str] = mapped_column(String(24))
    """A `MovementKind` value."""
    reference: Mapped[str | None] = mapped_column(String(64))
    """The movement's API id (`pay_…`, `ref_…`, `cnv_…`) once it has one."""
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    payee: Mapped[str | None] = mapped_column(String(80))
    merchant_id: Mapped[uuid.UUID | None] = mapped_column()
    device_id: Mapped[uuid.UUID | None] = mapped_column()
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(12))
    action: Mapped[str] = mapped_column(String(16))
    """An `Action` value: what was enforced."""
    score: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[str] = mapped_column(Text)
    """JSON list of human-readable reasons."""
    features: Mapped[str] = mapped_column(Text)
    """JSON object: every feature the rules and models saw."""
    hits: Mapped[str] = mapped_column(Text)
    """JSON list of rule hits (shadow ones included), see `RuleHit`."""
    model_score: Mapped[float | None] = mapped_column(Float)
    ruleset_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("action IN ('allow', 'challenge', 'review', 'block')", name="action"),
        Index("ix_risk_decisions_tenant_created", "tenant_id", "mode", "created_at"),
        Index("ix_risk_decisions_reference", "tenant_id", "mode", "reference"),
        Index("ix_risk_decisions_user_created", "user_id", "created_at"),
    )


class RiskLabel(Base):
    """Whether a movement turned out to be fraud, and who said so. One label per movement
    and source; a later label from the same source replaces the earlier one."""

    __tablename__ = "risk_labels"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    reference: Mapped[str] = mapped_column(String(64))
    """The movement's API id (`pay_…`), or the decision's (`rdc_…`) when it never had one."""
    decision_id: Mapped[uuid.UUID | None] = mapped_column()
    """The decision the label is about (its features are what a model learns from)."""
    fraud: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(24))
    """A `LabelSource` value."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index(
            "uq_risk_labels_reference_source",
            "tenant_id",
            "mode",
            "reference",
            "source",
            unique=True,
        ),
        Index("ix_risk_labels_tenant_updated", "tenant_id", "mode", "updated_at"),
    )
