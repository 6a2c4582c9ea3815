"""The tables of risk models: every trained version (with its serialized state) and the
drift alerts raised on them.

Times are ns since the epoch; JSON columns hold compact JSON text (both backends).
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = ["RiskModelAlert", "RiskModelVersion"]


class RiskModelVersion(Base):
    """One trained version of a tenant's model: ``shadow`` (scored and stored, never
    enforced) until promoted to ``active``; promoting one retires the previous active
    version of the same kind. At most one active version per tenant, mode and kind."""

    __tablename__ = "risk_model_versions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rmv_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(64))
    """The model's family (`fraud_logistic`, `anomaly_hst`); versions count within it."""
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, … per tenant, mode and name."""
    kind: Mapped[str] = mapped_column(String(16))
    """supervised (P(fraud), learns from labels) or anomaly (learns from every decision)."""
    status: Mapped[str] = mapped_column(String(16))
    """shadow, active or retired."""
    state: Mapped[bytes] = mapped_column(LargeBinary)
    """The pickled learner (`billfold.risk.scoring.learners`); loaded only from here."""
    state_digest: Mapped[str] = mapped_column(String(80))
    """``hmac-sha256:<hex>`` or ``sha256:<hex>`` of `state`, checked before unpickling."""
    trained_on: Mapped[int] = mapped_column(BigInteger)
    """Samples learned from, over every version of the name so far (labels or decisions)."""
    watermark_at: Mapped[int] = mapped_column(BigInteger)
    """The last sample learned: its label's `updated_at` or its decision's `created_at`."""
    watermark_id: Mapped[uuid.UUID | None] = mapped_column()
    """That sample's row id (ties on the time are broken by id)."""
    metrics: Mapped[str] = mapped_column(Text)
    """JSON object: this run's evaluation and the reference score distribution."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(64))
    """Who asked for the training (`opr_…`), None for the scheduler or the command line."""
    promoted_at: Mapped[int | None] = mapped_column(BigInteger)
    promoted_by: Mapped[str | None] = mapped_column(String(64))
    retired_at: Mapped[int | None] = mapped_column(BigInteger)
    promotion_approval_id: Mapped[uuid.UUID | None] = mapped_column()
    """The four-eyes request of its last asked-for promotion (``risk_model_promotion``)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("kind IN ('supervised', 'anomaly')", name="kind"),
        CheckConstraint("status IN ('shadow', 'active', 'retired')", name="status"),
        Index(
            "uq_risk_model_versions_version", "tenant_id", "mode", "name", "version", unique=True
        ),
        Index("ix_risk_model_versions_status", "tenant_id", "mode", "status"),
        Index(
            "uq_risk_model_versions_active",
            "tenant_id",
            "mode",
            "kind",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class RiskModelAlert(Base):
    """A model's scores drifted from its reference (see `billfold.risk.scoring.drift`)."""

    __tablename__ = "risk_model_alerts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rma_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    model_id: Mapped[uuid.UUID] = mapped_column()
    """The `risk_model_versions` row whose scores drifted."""
    kind: Mapped[str] = mapped_column(String(16))
    """What was detected: drift."""
    metric: Mapped[str] = mapped_column(String(16))
    """How it was measured: psi."""
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    window_size: Mapped[int] = mapped_column(Integer)
    reference_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("ix_risk_model_alerts_tenant", "tenant_id", "mode", "created_at"),
    )
