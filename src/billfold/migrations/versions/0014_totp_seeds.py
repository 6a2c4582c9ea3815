"""Identity: TOTP seeds encrypted at rest (``identity_user_totp.encrypted_secret``); the
clear ``secret`` column becomes nullable and is no longer written.

Existing seeds cannot be encrypted here: that needs the keystore (and an HSM session),
which a schema migration does not open. They stay readable and are sealed, and their
clear copy set NULL, at their next use (sign-in, step-up), or all at once by
``billfold keys seal-totp-seeds``, which is safe to run any time and again.

Revision ID: 0014_totp_seeds
Revises: 0016_payments_fx
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_totp_seeds"
down_revision = "0016_payments_fx"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_user_totp") as table:
        table.add_column(sa.Column("encrypted_secret", sa.LargeBinary(256), nullable=True))
        table.alter_column("secret", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    # Sealed seeds cannot be written back in the clear without the keystore, and dropping
    # them would silently switch those users' second factor off: refuse instead.
    sealed = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM identity_user_totp WHERE secret IS NULL")
    )
    if sealed:
        raise RuntimeError(
            f"{sealed} TOTP seeds are encrypted; 0014 cannot be downgraded without losing them."
        )
    with op.batch_alter_table("identity_user_totp") as table:
        table.alter_column("secret", existing_type=sa.String(64), nullable=False)
        table.drop_column("encrypted_secret")
