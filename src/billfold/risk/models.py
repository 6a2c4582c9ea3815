"""Risk's shared tables: every decision (with the features it saw) and the labels that
say, later, whether a movement was fraud; and the CEL rules the engine evaluates, with
their versions and the per-tenant ruleset version.

Times are ns since the epoch; JSON columns hold compact JSON text (both backends).
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

__all__ = [
    "RiskCase",
    "RiskDecision",
    "RiskLabel",
    "RiskResponse",
    "RiskRule",
    "RiskRuleVersion",
    "RiskRuleset",
]


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


class RiskCase(Base):
    """A movement held for review: an analyst approves it (the hold is posted) or rejects
    it (the hold is voided). Opened in the movement's own transaction."""

    __tablename__ = "risk_cases"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rcs_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    decision_id: Mapped[uuid.UUID] = mapped_column()
    reference: Mapped[str] = mapped_column(String(64))
    """The held movement's API id (`pay_…`, `ref_…`, `cnv_…`)."""
    kind: Mapped[str] = mapped_column(String(24))
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(16))
    """open, approved, rejected or expired."""
    hold_expires_at: Mapped[int] = mapped_column(BigInteger)
    """When an undecided case expires (its hold is then voided)."""
    opened_at: Mapped[int] = mapped_column(BigInteger)
    resolved_at: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[uuid.UUID | None] = mapped_column()
    """The operator who approved or rejected it."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("state IN ('open', 'approved', 'rejected', 'expired')", name="state"),
        Index("uq_risk_cases_reference", "tenant_id", "mode", "reference", unique=True),
        Index("ix_risk_cases_queue", "tenant_id", "mode", "state", "opened_at"),
        Index("ix_risk_cases_expiry", "state", "hold_expires_at"),
    )


class RiskResponse(Base):
    """An automated response applied to a user (see `Response`), until reversed."""

    __tablename__ = "risk_responses"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rrs_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    user_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(24))
    """A `Response` value."""
    decision_id: Mapped[uuid.UUID | None] = mapped_column()
    """The decision that asked for it (None: applied by an operator)."""
    state: Mapped[str] = mapped_column(String(16))
    """active, reversing (a reversal awaits approval) or reversed."""
    detail: Mapped[str] = mapped_column(Text)
    """JSON object: what was changed (accounts frozen, limits lowered), to undo it exactly."""
    applied_at: Mapped[int] = mapped_column(BigInteger)
    reversed_at: Mapped[int | None] = mapped_column(BigInteger)
    reversed_by: Mapped[uuid.UUID | None] = mapped_column()
    """The operator whose approved request reversed it."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("state IN ('active', 'reversing', 'reversed')", name="state"),
        Index("ix_risk_responses_user", "tenant_id", "mode", "user_id", "state"),
    )


class RiskRule(Base):
    """A named rule of one tenant and mode; what it does is its active version's."""

    __tablename__ = "risk_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """`rrl_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(64))
    """Unique per tenant and mode."""
    current_version: Mapped[int | None] = mapped_column(Integer)
    """The active version's number; None while none is active (pending or disabled)."""
    latest_version: Mapped[int] = mapped_column(Integer)
    """The highest version number written (active or not)."""
    created_by: Mapped[uuid.UUID] = mapped_column()
    """The operator who created it."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    disable_approval_id: Mapped[uuid.UUID | None] = mapped_column()
    """The approval request of the last asked-for disable of its active enforcing version
    (four eyes); its status says whether it waits, executed, was refused or expired."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        Index("uq_risk_rules_name", "tenant_id", "mode", "name", unique=True),
    )


class RiskRuleVersion(Base):
    """One version of a rule: immutable but for its state (and when it took effect)."""

    __tablename__ = "risk_rule_versions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rule_id: Mapped[uuid.UUID] = mapped_column()
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    mode: Mapped[str] = mapped_column(String(4))
    version: Mapped[int] = mapped_column(Integer)
    """1, 2, ... per rule."""
    expression: Mapped[str] = mapped_column(Text)
    """CEL over the features (``billfold.risk.rules``), at most 2,000 characters."""
    action: Mapped[str] = mapped_column(String(16))
    """An `Action` value: what a hit asks for."""
    score: Mapped[int] = mapped_column(Integer)
    """0 to 1000, added to the decision's score when it hits (enforcing)."""
    reason: Mapped[str] = mapped_column(String(200))
    """Human-readable, shown with the decision."""
    responses: Mapped[str] = mapped_column(Text)
    """JSON list of `Response` values a hit asks for (enforcing only)."""
    enforcement: Mapped[str] = mapped_column(String(16))
    """shadow (evaluated and stored, never enforced) or enforcing."""
    state: Mapped[str] = mapped_column(String(24))
    """pending_approval, active, superseded, disabled or rejected (see ``risk.changes``)."""
    created_by: Mapped[uuid.UUID] = mapped_column()
    """The operator who wrote it."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    approval_id: Mapped[uuid.UUID | None] = mapped_column()
    """The four-eyes request an enforcing version waits for (`apr_…`)."""
    activated_at: Mapped[int | None] = mapped_column(BigInteger)
    activated_by: Mapped[uuid.UUID | None] = mapped_column()
    """The approver (enforcing) or the author (shadow)."""
    active_from_ruleset: Mapped[int | None] = mapped_column(Integer)
    """The ruleset version at which it became active."""
    active_until_ruleset: Mapped[int | None] = mapped_column(Integer)
    """The ruleset version at which it stopped being active (superseded, disabled)."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("action IN ('allow', 'challenge', 'review', 'block')", name="action"),
        CheckConstraint("score >= 0 AND score <= 1000", name="score"),
        CheckConstraint("enforcement IN ('shadow', 'enforcing')", name="enforcement"),
        CheckConstraint(
            "state IN ('pending_approval', 'active', 'superseded', 'disabled', 'rejected')",
            name="state",
        ),
        Index("uq_risk_rule_versions_rule_version", "rule_id", "version", unique=True),
        Index("ix_risk_rule_versions_tenant_state", "tenant_id", "mode", "state"),
    )


class RiskRuleset(Base):
    """A tenant's ruleset version (per mode): bumped by every change that alters what the
    engine evaluates, so compiled rules are cached by it and a backtest can name one."""

    __tablename__ = "risk_rulesets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    mode: Mapped[str] = mapped_column(String(4), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("mode IN ('test', 'live')", name="mode"),)
