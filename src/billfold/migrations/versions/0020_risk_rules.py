"""Risk: CEL rules, their versions and the per-tenant ruleset version; approval requests
may be of the new action type ``risk_rule_change`` (four eyes on enforcing rules).

Revision ID: 0020_risk_rules
Revises: 0018_risk_core
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_risk_rules"
down_revision = "0018_risk_core"
branch_labels = None
depends_on = None

APPROVALS = "identity_approval_requests"
_ACTION_TYPES = "'ledger_adjustment', 'account_unfreeze', 'limit_increase', 'key_rotation'"


def _action_types(check: str) -> None:
    with op.batch_alter_table(APPROVALS) as table:
        table.drop_constraint(op.f(f"ck_{APPROVALS}_action_type"), type_="check")
        table.create_check_constraint(op.f(f"ck_{APPROVALS}_action_type"), check)


def upgrade() -> None:
    op.create_table(
        "risk_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_rules")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_rules_mode")),
    )
    op.create_index("uq_risk_rules_name", "risk_rules", ["tenant_id", "mode", "name"], unique=True)
    op.create_table(
        "risk_rule_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("responses", sa.Text(), nullable=False),
        sa.Column("enforcement", sa.String(16), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("approval_id", sa.Uuid(), nullable=True),
        sa.Column("activated_at", sa.BigInteger(), nullable=True),
        sa.Column("activated_by", sa.Uuid(), nullable=True),
        sa.Column("active_from_ruleset", sa.Integer(), nullable=True),
        sa.Column("active_until_ruleset", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_rule_versions")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_rule_versions_mode")),
        sa.CheckConstraint(
            "action IN ('allow', 'challenge', 'review', 'block')",
            name=op.f("ck_risk_rule_versions_action"),
        ),
        sa.CheckConstraint(
            "score >= 0 AND score <= 1000", name=op.f("ck_risk_rule_versions_score")
        ),
        sa.CheckConstraint(
            "enforcement IN ('shadow', 'enforcing')",
            name=op.f("ck_risk_rule_versions_enforcement"),
        ),
        sa.CheckConstraint(
            "state IN ('pending_approval', 'active', 'superseded', 'disabled', 'rejected')",
            name=op.f("ck_risk_rule_versions_state"),
        ),
    )
    op.create_index(
        "uq_risk_rule_versions_rule_version",
        "risk_rule_versions",
        ["rule_id", "version"],
        unique=True,
    )
    op.create_index(
        "ix_risk_rule_versions_tenant_state", "risk_rule_versions", ["tenant_id", "mode", "state"]
    )
    op.create_table(
        "risk_rulesets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "mode", name=op.f("pk_risk_rulesets")),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_risk_rulesets_mode")),
    )
    _action_types(f"action_type IN ({_ACTION_TYPES}, 'risk_rule_change')")


def downgrade() -> None:
    op.execute(f"DELETE FROM {APPROVALS} WHERE action_type = 'risk_rule_change'")
    _action_types(f"action_type IN ({_ACTION_TYPES})")
    op.drop_table("risk_rulesets")
    op.drop_index("ix_risk_rule_versions_tenant_state", table_name="risk_rule_versions")
    op.drop_index("uq_risk_rule_versions_rule_version", table_name="risk_rule_versions")
    op.drop_table("risk_rule_versions")
    op.drop_index("uq_risk_rules_name", table_name="risk_rules")
    op.drop_table("risk_rules")
