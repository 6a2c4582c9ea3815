"""Identity: operators, their sessions, four-eyes approval requests, approved changes.

Revision ID: 0006_operators
Revises: 0005_end_users
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_operators"
down_revision = "0005_end_users"
branch_labels = None
depends_on = None

OPERATORS = "identity_operators"
SESSIONS = "identity_operator_sessions"
APPROVALS = "identity_approval_requests"
CHANGES = "identity_approved_changes"


def _tenant_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["identity_tenants.id"], name=f"fk_{table}_tenant_id_identity_tenants"
    )


def _operator_key(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{OPERATORS}.id"], name=f"fk_{table}_{column}_{OPERATORS}"
    )


def upgrade() -> None:
    op.create_table(
        OPERATORS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("roles", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("password_change_required", sa.Boolean, nullable=False),
        sa.Column("failed_login_count", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{OPERATORS}"),
        _tenant_key(OPERATORS),
        sa.UniqueConstraint("tenant_id", "email", name=f"uq_{OPERATORS}_tenant_id_email"),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=f"ck_{OPERATORS}_status"),
    )
    op.create_index(f"ix_{OPERATORS}_tenant_id_id", OPERATORS, ["tenant_id", "id"])
    op.create_table(
        SESSIONS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("operator_id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name=f"pk_{SESSIONS}"),
        _operator_key(SESSIONS, "operator_id"),
        _tenant_key(SESSIONS),
    )
    op.create_index(
        f"ix_{SESSIONS}_operator_id_expires_at", SESSIONS, ["operator_id", "expires_at"]
    )
    _create_approvals()


def _create_approvals() -> None:
    op.create_table(
        APPROVALS,
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("action_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("requested_by", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("decided_by", sa.Uuid),
        sa.Column("decided_at", sa.BigInteger),
        sa.Column("decision_note", sa.String(500)),
        sa.Column("executed_at", sa.BigInteger),
        sa.Column("result", sa.Text),
        sa.PrimaryKeyConstraint("id", name=f"pk_{APPROVALS}"),
        _tenant_key(APPROVALS),
        _operator_key(APPROVALS, "requested_by"),
        _operator_key(APPROVALS, "decided_by"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'refused', 'expired', 'executed', 'failed')",
            name=f"ck_{APPROVALS}_status",
        ),
        sa.CheckConstraint(
            "action_type IN ('ledger_adjustment', 'account_unfreeze', 'limit_increase',"
            " 'key_rotation')",
            name=f"ck_{APPROVALS}_action_type",
        ),
        sa.CheckConstraint(
            "decided_by IS NULL OR decided_by <> requested_by",
            name=f"ck_{APPROVALS}_decider_is_not_requester",
        ),
    )
    op.create_index(f"ix_{APPROVALS}_tenant_id_id", APPROVALS, ["tenant_id", "id"])
    op.create_index(f"ix_{APPROVALS}_status_expires_at", APPROVALS, ["status", "expires_at"])
    op.create_table(
        CHANGES,
        sa.Column("approval_id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("action_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("applied_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("approval_id", name=f"pk_{CHANGES}"),
        sa.ForeignKeyConstraint(
            ["approval_id"], [f"{APPROVALS}.id"], name=f"fk_{CHANGES}_approval_id"
        ),
        _tenant_key(CHANGES),
    )
    op.create_index(f"ix_{CHANGES}_applied_at_action_type", CHANGES, ["applied_at", "action_type"])


def downgrade() -> None:
    op.drop_index(f"ix_{CHANGES}_applied_at_action_type", table_name=CHANGES)
    op.drop_table(CHANGES)
    op.drop_index(f"ix_{APPROVALS}_status_expires_at", table_name=APPROVALS)
    op.drop_index(f"ix_{APPROVALS}_tenant_id_id", table_name=APPROVALS)
    op.drop_table(APPROVALS)
    op.drop_index(f"ix_{SESSIONS}_operator_id_expires_at", table_name=SESSIONS)
    op.drop_table(SESSIONS)
    op.drop_index(f"ix_{OPERATORS}_tenant_id_id", table_name=OPERATORS)
    op.drop_table(OPERATORS)
