"""Wallets, merchants, holder tiers, payments and their history, transfers, fees, refunds,
disputes, money requests, split rules, and inbound provider notifications.

Revision ID: 0011_payments
Revises: 0010_events
Create Date: 2026-11-22 17:18:43.367816
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_payments"
down_revision = "0010_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connectors_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("processed_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectors_notifications")),
    )
    op.create_index(
        "uq_connectors_notifications_provider_event_id",
        "connectors_notifications",
        ["provider", "event_id"],
        unique=True,
    )

    op.create_table(
        "payments_disputes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("held_amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_by", sa.String(length=16), nullable=False),
        sa.Column("provider_dispute_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("evidence_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "state IN ('opening', 'open', 'won', 'lost')", name=op.f("ck_payments_disputes_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_disputes")),
        sa.UniqueConstraint(
            "provider_dispute_id", name=op.f("uq_payments_disputes_provider_dispute_id")
        ),
    )
    op.create_index(
        op.f("ix_payments_disputes_payment_id"), "payments_disputes", ["payment_id"], unique=False
    )

    op.create_table(
        "payments_fees",
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_payments_fees")),
    )
    op.create_index(
        op.f("ix_payments_fees_payment_id"), "payments_fees", ["payment_id"], unique=False
    )

    op.create_table(
        "payments_money_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("payee_user_id", sa.Uuid(), nullable=False),
        sa.Column("payer_user_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "mode IN ('test', 'live')", name=op.f("ck_payments_money_requests_mode")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_money_requests_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_money_requests")),
    )
    op.create_index(
        op.f("ix_payments_money_requests_payer_user_id"),
        "payments_money_requests",
        ["payer_user_id"],
        unique=False,
    )

    op.create_table(
        "payments_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("payer_user_id", sa.Uuid(), nullable=True),
        sa.Column("payee_user_id", sa.Uuid(), nullable=True),
        sa.Column("merchant_id", sa.Uuid(), nullable=True),
        sa.Column("debit_account_id", sa.Uuid(), nullable=True),
        sa.Column("credit_account_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("instrument", sa.String(length=12), nullable=True),
        sa.Column("provider_reference", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("capture_mode", sa.String(length=16), nullable=False),
        sa.Column("split_rule_id", sa.Uuid(), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("next_action_url", sa.String(length=256), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_payments_payments_mode")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_payments_amount")),
        sa.CheckConstraint(
            "refunded_amount <= captured_amount", name=op.f("ck_payments_payments_refunds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_payments")),
    )
    op.create_index(
        "ix_payments_payments_payer_user_id_created_at",
        "payments_payments",
        ["payer_user_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_payments_payments_tenant_id_mode_id",
        "payments_payments",
        ["tenant_id", "mode", "id"],
        unique=False,
    )

    op.create_table(
        "payments_refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'succeeded', 'failed')", name=op.f("ck_payments_refunds_state")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_refunds_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_refunds")),
    )
    op.create_index(
        op.f("ix_payments_refunds_payment_id"), "payments_refunds", ["payment_id"], unique=False
    )

    op.create_table(
        "payments_split_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("shares_json", sa.Text(), nullable=False),
        sa.Column("levels", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_payments_split_rules_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_split_rules")),
    )
    op.create_table(
        "payments_state_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_state_history")),
    )
    op.create_index(
        op.f("ix_payments_state_history_payment_id"),
        "payments_state_history",
        ["payment_id"],
        unique=False,
    )

    op.create_table(
        "payments_transfers",
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_payments_transfers")),
    )
    op.create_index(
        op.f("ix_payments_transfers_payment_id"), "payments_transfers", ["payment_id"], unique=False
    )

    op.create_table(
        "wallets_holder_tiers",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("tier BETWEEN 0 AND 3", name=op.f("ck_wallets_holder_tiers_tier")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_wallets_holder_tiers")),
    )
    op.create_table(
        "wallets_merchants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=False),
        sa.Column("category_code", sa.String(length=4), nullable=False),
        sa.Column("settlement_currency", sa.String(length=12), nullable=False),
        sa.Column("fee_schedule", sa.String(length=64), nullable=True),
        sa.Column("split_rule_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_wallets_merchants_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_merchants")),
    )
    op.create_index(
        "ix_wallets_merchants_tenant_id_mode_id",
        "wallets_merchants",
        ["tenant_id", "mode", "id"],
        unique=False,
    )

    op.create_table(
        "wallets_wallets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=4), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('test', 'live')", name=op.f("ck_wallets_wallets_mode")),
        sa.CheckConstraint(
            "owner_kind IN ('user', 'merchant')", name=op.f("ck_wallets_wallets_owner_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets_wallets")),
    )
    op.create_index(
        "uq_wallets_wallets_owner",
        "wallets_wallets",
        ["tenant_id", "mode", "owner_kind", "owner_id", "currency"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("wallets_wallets")
    op.drop_table("wallets_merchants")
    op.drop_table("wallets_holder_tiers")
    op.drop_table("payments_transfers")
    op.drop_table("payments_state_history")
    op.drop_table("payments_split_rules")
    op.drop_table("payments_refunds")
    op.drop_table("payments_payments")
    op.drop_table("payments_money_requests")
    op.drop_table("payments_fees")
    op.drop_table("payments_disputes")
    op.drop_table("connectors_notifications")
