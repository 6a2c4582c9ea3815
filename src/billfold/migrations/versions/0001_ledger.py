"""The ledger: clock, accounts, immutable transfers, pending states, balance history.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

AMOUNT_MAX = 2**127 - 1
AMOUNT_DIGITS = 39
_BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def _amount_type(dialect: str) -> sa.types.TypeEngine[object]:
    if dialect == "sqlite":
        return sa.String(AMOUNT_DIGITS)  # type: ignore[return-value]
    return sa.Numeric(AMOUNT_DIGITS, 0)  # type: ignore[return-value]


def _amount_check(dialect: str, column: str) -> sa.CheckConstraint:
    """0 <= column <= 2^127-1 on both backends (SQLite: 39 decimal digits, zero-padded)."""
    if dialect == "sqlite":
        condition = (
            f"length({column}) = {AMOUNT_DIGITS} AND {column} NOT GLOB '*[^0-9]*'"
            f" AND {column} <= '{AMOUNT_MAX:0{AMOUNT_DIGITS}d}'"
        )
    else:
        condition = f"{column} >= 0 AND {column} <= {AMOUNT_MAX}"
    return sa.CheckConstraint(condition, name=f"{column}_range")


def _amounts(dialect: str, *names: str) -> list[SchemaItem]:
    items: list[SchemaItem] = []
    for name in names:
        items.append(sa.Column(name, _amount_type(dialect), nullable=False))
        items.append(_amount_check(dialect, name))
    return items


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "ledger_clock",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("last_timestamp", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute("INSERT INTO ledger_clock (id, last_timestamp) VALUES (1, 0)")
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False, index=True),
        sa.Column("ledger", sa.String(12), nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("owner_ref", sa.String(128)),
        sa.Column("user_data", sa.String(128)),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        *_amounts(dialect, *_BALANCES),
        sa.Column("timestamp", sa.BigInteger, nullable=False, unique=True),
        sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status"),
        sa.CheckConstraint("(flags & 3) <> 3", name="flags_exclusive"),
        sa.CheckConstraint("code BETWEEN 1 AND 65535", name="code_range"),
        # Room on each page for HOT updates: balances change on every transfer.
        postgresql_with={"fillfactor": 80},
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("debit_account_id", sa.Uuid, nullable=False),
        sa.Column("credit_account_id", sa.Uuid, nullable=False),
        *_amounts(dialect, "amount"),
        sa.Column("ledger", sa.String(12), nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("pending_id", sa.Uuid),
        sa.Column("timeout_s", sa.BigInteger, nullable=False),
        sa.Column("user_data", sa.String(128)),
        sa.Column("timestamp", sa.BigInteger, nullable=False, unique=True),
        sa.Column("expires_at", sa.BigInteger),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="accounts_differ"),
    )
    op.create_index(
        "ix_ledger_transfers_debit_account_id_timestamp",
        "ledger_transfers",
        ["debit_account_id", "timestamp"],
    )
    op.create_index(
        "ix_ledger_transfers_credit_account_id_timestamp",
        "ledger_transfers",
        ["credit_account_id", "timestamp"],
    )
    op.create_index(
        "uq_ledger_transfers_pending_id",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
        sqlite_where=sa.text("pending_id IS NOT NULL"),
    )
    op.create_table(
        "ledger_pending_transfers",
        sa.Column("transfer_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("status", sa.String(8), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name="status"),
    )
    op.create_index(
        "ix_ledger_pending_transfers_open_expires_at",
        "ledger_pending_transfers",
        ["expires_at"],
        postgresql_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
        sqlite_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
    )
    op.create_table(
        "ledger_account_balances",
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column("timestamp", sa.BigInteger, primary_key=True),
        sa.Column("transfer_id", sa.Uuid, nullable=False),
        *_amounts(dialect, *_BALANCES),
    )
    _forbid_changes(dialect, "ledger_transfers")
    _forbid_changes(dialect, "ledger_account_balances")


def _forbid_changes(dialect: str, table: str) -> None:
    """Rows of `table` are immutable: the database refuses UPDATE and DELETE."""
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
            )
        return
    op.execute(
        f"""
        CREATE FUNCTION {table}_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{table} rows are immutable'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {table}_immutable()"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("ledger_account_balances", "ledger_transfers"):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_immutable()")
    for table in (
        "ledger_account_balances",
        "ledger_pending_transfers",
        "ledger_transfers",
        "ledger_accounts",
        "ledger_clock",
    ):
        op.drop_table(table)
