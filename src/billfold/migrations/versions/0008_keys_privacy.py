"""Keys and privacy: the key hierarchy, the PII vault, tokens and consent records.

Revision ID: 0008_keys_privacy
Revises: 0007_fees_fx
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_keys_privacy"
down_revision = "0007_fees_fx"
branch_labels = None
depends_on = None


def _keys() -> None:
    op.create_table(
        "keys_encryption_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("keystore_key_id", sa.String(128), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(256)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("retired_at", sa.BigInteger),
        sa.CheckConstraint("status IN ('active', 'decrypt_only', 'retired')", name="status"),
        sa.CheckConstraint("version >= 1", name="version"),
    )
    op.create_index(
        "uq_keys_encryption_keys_tenant_id_purpose_version",
        "keys_encryption_keys",
        ["tenant_id", "purpose", "version"],
        unique=True,
    )
    op.create_table(
        "keys_data_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("slot", sa.String(16), nullable=False),
        sa.Column("kek_version", sa.Integer, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(256)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("destroyed_at", sa.BigInteger),
    )
    op.create_index(
        "uq_keys_data_keys_tenant_id_purpose_owner_slot",
        "keys_data_keys",
        ["tenant_id", "purpose", "owner", "slot"],
        unique=True,
    )
    op.create_index(
        "ix_keys_data_keys_tenant_id_purpose_kek_version",
        "keys_data_keys",
        ["tenant_id", "purpose", "kek_version"],
    )
    op.create_index("ix_keys_data_keys_tenant_id_owner", "keys_data_keys", ["tenant_id", "owner"])
    op.create_table(
        "keys_signing_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary(256)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("retired_at", sa.BigInteger),
        sa.CheckConstraint("status IN ('active', 'verify_only', 'retired')", name="status"),
    )
    op.create_index(
        "uq_keys_signing_keys_tenant_id_purpose_version",
        "keys_signing_keys",
        ["tenant_id", "purpose", "version"],
        unique=True,
    )


def _privacy() -> None:
    op.create_table(
        "privacy_pii_values",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(2048), nullable=False),
        sa.Column("blind_index", sa.LargeBinary(32)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    )
    op.create_index(
        "uq_privacy_pii_values_user_id_field",
        "privacy_pii_values",
        ["user_id", "field"],
        unique=True,
    )
    op.create_index(
        "ix_privacy_pii_values_tenant_id_mode_field_blind_index",
        "privacy_pii_values",
        ["tenant_id", "mode", "field", "blind_index"],
    )
    op.create_table(
        "privacy_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token", sa.String(34), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(2048), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
        sa.CheckConstraint("kind IN ('pan', 'bank_account')", name="kind"),
    )
    op.create_index(
        "uq_privacy_tokens_tenant_id_mode_kind_token",
        "privacy_tokens",
        ["tenant_id", "mode", "kind", "token"],
        unique=True,
    )
    op.create_index(
        "uq_privacy_tokens_tenant_id_mode_kind_fingerprint",
        "privacy_tokens",
        ["tenant_id", "mode", "kind", "fingerprint"],
        unique=True,
    )
    op.create_table(
        "privacy_consents",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("granted_at", sa.BigInteger, nullable=False),
        sa.Column("withdrawn_at", sa.BigInteger),
        sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    )
    op.create_index(
        "ix_privacy_consents_user_id_purpose", "privacy_consents", ["user_id", "purpose"]
    )


def upgrade() -> None:
    _keys()
    _privacy()


def downgrade() -> None:
    for table in (
        "privacy_consents",
        "privacy_tokens",
        "privacy_pii_values",
        "keys_signing_keys",
        "keys_data_keys",
        "keys_encryption_keys",
    ):
        op.drop_table(table)
