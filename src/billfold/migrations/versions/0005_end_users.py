"""Identity: end users, their sessions and tokens, second factors, devices and step-ups.

Revision ID: 0005_end_users
Revises: 0004_security_events
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_end_users"
down_revision = "0004_security_events"
branch_labels = None
depends_on = None

USERS = "identity_users"


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.Uuid, primary_key=True)


def _user_id(table: str) -> sa.Column[object]:
    return sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey(f"{USERS}.id", name=f"fk_{table}_user_id_{USERS}"),
        nullable=False,
    )


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def _users() -> None:
    op.create_table(
        USERS,
        _id(),
        sa.Column(
            "tenant_id",
            sa.Uuid,
            sa.ForeignKey("identity_tenants.id", name=f"fk_{USERS}_tenant_id_identity_tenants"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column("phone", sa.String(16)),
        sa.Column("handle", sa.String(30)),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failed_login_count", sa.Integer, nullable=False),
        _time("locked_until", nullable=True),
        _time("created_at"),
        sa.CheckConstraint("mode IN ('test', 'live')", name=f"ck_{USERS}_mode"),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=f"ck_{USERS}_status"),
        sa.CheckConstraint(
            "email IS NOT NULL OR phone IS NOT NULL OR handle IS NOT NULL",
            name=f"ck_{USERS}_identifier",
        ),
    )
    for column in ("email", "phone", "handle"):
        op.create_index(
            f"uq_{USERS}_tenant_id_mode_{column}",
            USERS,
            ["tenant_id", "mode", column],
            unique=True,
        )
    op.create_index(f"ix_{USERS}_tenant_id_mode_id", USERS, ["tenant_id", "mode", "id"])


def _sessions() -> None:
    table = "identity_user_sessions"
    op.create_table(
        table,
        _id(),
        _user_id(table),
        sa.Column("methods", sa.String(64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _time("refreshed_at", nullable=True),
        sa.Column("refresh_count", sa.Integer, nullable=False),
        _time("revoked_at", nullable=True),
        sa.Column("revoked_reason", sa.String(32)),
    )
    op.create_index(f"ix_{table}_user_id_id", table, ["user_id", "id"])
    tokens = "identity_user_tokens"
    op.create_table(
        tokens,
        _id(),
        sa.Column(
            "session_id",
            sa.Uuid,
            sa.ForeignKey(f"{table}.id", name=f"fk_{tokens}_session_id_{table}"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _time("used_at", nullable=True),
        sa.CheckConstraint("kind IN ('access', 'refresh')", name=f"ck_{tokens}_kind"),
    )
    op.create_index(f"uq_{tokens}_token_hash", tokens, ["token_hash"], unique=True)
    op.create_index(f"ix_{tokens}_session_id_kind", tokens, ["session_id", "kind"])


def _factors() -> None:
    tickets = "identity_user_mfa_tickets"
    op.create_table(
        tickets,
        _id(),
        _user_id(tickets),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        _time("consumed_at", nullable=True),
    )
    op.create_index(f"uq_{tickets}_token_hash", tickets, ["token_hash"], unique=True)
    op.create_index(f"ix_{tickets}_user_id", tickets, ["user_id"])
    totp = "identity_user_totp"
    op.create_table(
        totp,
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey(f"{USERS}.id", name=f"fk_{totp}_user_id_{USERS}"),
            primary_key=True,
        ),
        sa.Column("secret", sa.String(64), nullable=False),
        _time("created_at"),
        _time("confirmed_at", nullable=True),
        _time("last_used_step", nullable=True),
    )
    codes = "identity_user_recovery_codes"
    op.create_table(
        codes,
        _id(),
        _user_id(codes),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        _time("created_at"),
        _time("used_at", nullable=True),
    )
    op.create_index(f"uq_{codes}_user_id_code_hash", codes, ["user_id", "code_hash"], unique=True)


def _passkeys() -> None:
    passkeys = "identity_user_passkeys"
    op.create_table(
        passkeys,
        _id(),
        _user_id(passkeys),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(1023), nullable=False),
        sa.Column("public_key", sa.LargeBinary(1024), nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("aaguid", sa.String(36), nullable=False),
        _time("created_at"),
        _time("last_used_at", nullable=True),
    )
    op.create_index(f"uq_{passkeys}_credential_id", passkeys, ["credential_id"], unique=True)
    op.create_index(f"ix_{passkeys}_user_id", passkeys, ["user_id"])
    challenges = "identity_user_webauthn_challenges"
    op.create_table(
        challenges,
        _id(),
        _user_id(challenges),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("challenge", sa.LargeBinary(64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _time("consumed_at", nullable=True),
        sa.CheckConstraint(
            "purpose IN ('registration', 'authentication')", name=f"ck_{challenges}_purpose"
        ),
    )
    op.create_index(f"uq_{challenges}_challenge", challenges, ["challenge"], unique=True)
    op.create_index(f"ix_{challenges}_user_id", challenges, ["user_id"])


def _devices() -> None:
    devices = "identity_user_devices"
    op.create_table(
        devices,
        _id(),
        _user_id(devices),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(200), nullable=False),
        _time("created_at"),
        _time("last_used_at", nullable=True),
        _time("revoked_at", nullable=True),
        sa.CheckConstraint("algorithm IN ('ed25519', 'p256')", name=f"ck_{devices}_algorithm"),
    )
    op.create_index(f"ix_{devices}_user_id", devices, ["user_id"])
    nonces = "identity_user_device_nonces"
    op.create_table(
        nonces,
        sa.Column(
            "device_id",
            sa.Uuid,
            sa.ForeignKey(f"{devices}.id", name=f"fk_{nonces}_device_id_{devices}"),
            primary_key=True,
        ),
        sa.Column("nonce", sa.String(64), primary_key=True),
        _time("expires_at"),
    )


def _step_ups() -> None:
    step_ups = "identity_user_step_ups"
    op.create_table(
        step_ups,
        _id(),
        _user_id(step_ups),
        sa.Column("amount", sa.String(39), nullable=False),
        sa.Column("currency", sa.String(12), nullable=False),
        sa.Column("payee", sa.String(200), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column(
            "device_id",
            sa.Uuid,
            sa.ForeignKey(
                "identity_user_devices.id", name=f"fk_{step_ups}_device_id_identity_user_devices"
            ),
        ),
        sa.Column("challenge", sa.String(64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        _time("answered_at", nullable=True),
        sa.Column("token_hash", sa.LargeBinary(32)),
        _time("token_expires_at", nullable=True),
        _time("used_at", nullable=True),
        sa.CheckConstraint("method IN ('totp', 'device')", name=f"ck_{step_ups}_method"),
    )
    op.create_index(f"uq_{step_ups}_token_hash", step_ups, ["token_hash"], unique=True)
    op.create_index(f"ix_{step_ups}_user_id_expires_at", step_ups, ["user_id", "expires_at"])


def upgrade() -> None:
    _users()
    _sessions()
    _factors()
    _passkeys()
    _devices()
    _step_ups()


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes on both backends.
    for table in (
        "identity_user_step_ups",
        "identity_user_device_nonces",
        "identity_user_devices",
        "identity_user_webauthn_challenges",
        "identity_user_passkeys",
        "identity_user_recovery_codes",
        "identity_user_totp",
        "identity_user_mfa_tickets",
        "identity_user_tokens",
        "identity_user_sessions",
        USERS,
    ):
        op.drop_table(table)
