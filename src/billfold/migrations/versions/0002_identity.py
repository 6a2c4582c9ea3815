"""Identity: tenants and their API keys (stored as hashes only).

Revision ID: 0002_identity
Revises: 0001_ledger
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_identity"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_tenants",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_tenants"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="ck_identity_tenants_status"),
    )
    op.create_table(
        "identity_api_keys",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("revoked_at", sa.BigInteger),
        sa.Column("last_used_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_identity_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["identity_tenants.id"],
            name="fk_identity_api_keys_tenant_id_identity_tenants",
        ),
        sa.CheckConstraint("mode IN ('test', 'live')", name="ck_identity_api_keys_mode"),
    )
    op.create_index(
        "ix_identity_api_keys_tenant_id_mode_id",
        "identity_api_keys",
        ["tenant_id", "mode", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_identity_api_keys_tenant_id_mode_id", table_name="identity_api_keys")
    op.drop_table("identity_api_keys")
    op.drop_table("identity_tenants")
