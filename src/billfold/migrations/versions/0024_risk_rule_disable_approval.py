"""Risk rules: the approval request of a disable waiting for four eyes (disabling an
active enforcing rule, like enabling one, needs a second operator).

Revision ID: 0024_risk_rule_disable_approval
Revises: 0019_risk_features
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_risk_rule_disable_approval"
down_revision = "0019_risk_features"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("risk_rules", sa.Column("disable_approval_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_rules") as batch:
        batch.drop_column("disable_approval_id")
