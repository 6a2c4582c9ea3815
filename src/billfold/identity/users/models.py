"""End users' tables: the wallet holders of a tenant, in one mode, and their credentials.

Only ``billfold.identity.users`` writes them. Times are integer nanoseconds since the Unix
epoch, like the rest of identity. No secret is stored in a form that logs in by itself:
passwords are Argon2id hashes, every token and recovery code a SHA-256 hash. The TOTP
seed, which verification needs whole, is envelope-encrypted (see ``TotpFactor``).
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from billfold.kit.orm import Base

ENCRYPTED_SEED_BYTES_MAX = 256
"""A sealed 32-character seed takes 77 bytes (header, nonce, ciphertext and tag)."""

__all__ = [
    "AMOUNT_TEXT_LENGTH_MAX",
    "CREDENTIAL_ID_BYTES_MAX",
    "DEVICE_NAME_LENGTH_MAX",
    "DEVICE_PUBLIC_KEY_BYTES_MAX",
    "EMAIL_LENGTH_MAX",
    "ENCRYPTED_SEED_BYTES_MAX",
    "HANDLE_LENGTH_MAX",
    "NONCE_LENGTH_MAX",
    "PASSKEY_NAME_LENGTH_MAX",
    "PASSKEY_PUBLIC_KEY_BYTES_MAX",
    "PAYEE_LENGTH_MAX",
    "PHONE_LENGTH_MAX",
    "TOKEN_HASH_BYTES",
    "Device",
    "DeviceNonce",
    "EndUser",
    "MfaTicket",
    "Passkey",
    "RecoveryCode",
    "StepUp",
    "TotpFactor",
    "UserSession",
    "UserToken",
    "WebAuthnChallenge",
]

EMAIL_LENGTH_MAX = 254
"""RFC 5321's limit on a forward path."""
PHONE_LENGTH_MAX = 16
"""E.164: a plus sign and at most 15 digits."""
HANDLE_LENGTH_MAX = 30
PASSWORD_HASH_LENGTH_MAX = 256
"""An Argon2 PHC string with its parameters, salt and hash is about 100 characters."""
TOKEN_HASH_BYTES = 32
"""SHA-256 digest size."""
CREDENTIAL_ID_BYTES_MAX = 1023
"""WebAuthn Level 3 caps credential ids at 1,023 bytes."""
PASSKEY_PUBLIC_KEY_BYTES_MAX = 1024
"""A COSE key: 77 bytes for P-256, 44 for Ed25519, about 270 for RSA-2048."""
PASSKEY_NAME_LENGTH_MAX = 100
DEVICE_NAME_LENGTH_MAX = 100
DEVICE_PUBLIC_KEY_BYTES_MAX = 200
"""A DER SubjectPublicKeyInfo: 44 bytes for Ed25519, 91 for P-256."""
NONCE_LENGTH_MAX = 64
AMOUNT_TEXT_LENGTH_MAX = 39
"""2**127 - 1, the largest amount, has 39 decimal digits."""
CURRENCY_LENGTH_MAX = 12
PAYEE_LENGTH_MAX = 200


class EndUser(Base):
    """A wallet holder of one tenant in one mode: a test-mode user never signs in live."""

    __tablename__ = "identity_users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `usr_<hex>` in the API."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_tenants.id"))
    """The tenant whose wallet this user holds."""
    mode: Mapped[str] = mapped_column(String(4))
    """test or live, from the API key that created the user."""
    email: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH_MAX))
    """Normalized (NFKC, lowercase); unique per tenant and mode."""
    phone: Mapped[str | None] = mapped_column(String(PHONE_LENGTH_MAX))
    """E.164 (`+` and digits only); unique per tenant and mode."""
    handle: Mapped[str | None] = mapped_column(String(HANDLE_LENGTH_MAX))
    """Lowercase name the user picked; unique per tenant and mode."""
    password_hash: Mapped[str] = mapped_column(String(PASSWORD_HASH_LENGTH_MAX))
    """Argon2id PHC string; rehashed at login when the parameters change."""
    status: Mapped[str] = mapped_column(String(16))
    """active or disabled; a disabled user cannot sign in or use a session."""
    failed_login_count: Mapped[int] = mapped_column(Integer)
    """Consecutive failed password or second-factor attempts since the last success or lock."""
    locked_until: Mapped[int | None] = mapped_column(BigInteger)
    """Sign-in is refused until then (ns since the epoch); NULL when not locked."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the user signed up, ns since the epoch."""

    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint(
            "email IS NOT NULL OR phone IS NOT NULL OR handle IS NOT NULL", name="identifier"
        ),
        # Each identifier signs in exactly one user of a tenant's mode; NULLs do not collide.
        Index("uq_identity_users_tenant_id_mode_email", "tenant_id", "mode", "email", unique=True),
        Index("uq_identity_users_tenant_id_mode_phone", "tenant_id", "mode", "phone", unique=True),
        Index(
            "uq_identity_users_tenant_id_mode_handle", "tenant_id", "mode", "handle", unique=True
        ),
        # Listing walks one tenant's users of one mode in id (creation) order.
        Index("ix_identity_users_tenant_id_mode_id", "tenant_id", "mode", "id"),
    )


class UserSession(Base):
    """One sign-in: the family of every access and refresh token rotated from it."""

    __tablename__ = "identity_user_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `ses_<hex>` in the API."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Whose session it is."""
    methods: Mapped[str] = mapped_column(String(64))
    """How the user proved themselves, e.g. `password+totp`."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the user signed in, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """The absolute end of the session, however often it is refreshed."""
    refreshed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a refresh token of this session was last exchanged."""
    refresh_count: Mapped[int] = mapped_column(Integer)
    """Refreshes so far; bounded, so one session holds a bounded number of token rows."""
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the whole family was revoked; NULL while it is usable."""
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    """logout, revoked, revoked_all, refresh_token_reused or session_limit; a revoked
    session whose spent refresh token is presented again takes refresh_token_reused."""

    __table_args__ = (Index("ix_identity_user_sessions_user_id_id", "user_id", "id"),)


class UserToken(Base):
    """An access or refresh token of a session, stored as its hash only."""

    __tablename__ = "identity_user_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_user_sessions.id"))
    """The family the token belongs to; revoking the session revokes it."""
    kind: Mapped[str] = mapped_column(String(8))
    """access or refresh."""
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_HASH_BYTES))
    """SHA-256 of the whole token; the token itself is shown once."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the token was issued, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """When the token stops working, ns since the epoch."""
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    """For a refresh token: when it was exchanged. Presented again, it revokes the family."""

    __table_args__ = (
        CheckConstraint("kind IN ('access', 'refresh')", name="kind"),
        Index("uq_identity_user_tokens_token_hash", "token_hash", unique=True),
        Index("ix_identity_user_tokens_session_id_kind", "session_id", "kind"),
    )


class MfaTicket(Base):
    """The short-lived proof that a user passed the password step and owes a second factor."""

    __tablename__ = "identity_user_mfa_tickets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Who passed the password step."""
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_HASH_BYTES))
    """SHA-256 of the `bfu_mfa_…` token."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the password step succeeded, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """When the second step must be done by, ns since the epoch."""
    failed_attempts: Mapped[int] = mapped_column(Integer)
    """Wrong second factors presented with this ticket; bounded."""
    consumed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a second factor completed the sign-in; a ticket is used once."""

    __table_args__ = (
        Index("uq_identity_user_mfa_tickets_token_hash", "token_hash", unique=True),
        Index("ix_identity_user_mfa_tickets_user_id", "user_id"),
    )


class TotpFactor(Base):
    """A user's RFC 6238 authenticator app.

    Every verification recomputes codes from the seed, so it is kept, but only
    envelope-encrypted (``billfold.keys``, purpose ``totp``, bound to this table, column and
    row: ``users.totp_seeds``); it is never returned after enrolment.
    """

    __tablename__ = "identity_user_totp"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"), primary_key=True)
    """The user; one authenticator each."""
    secret: Mapped[str | None] = mapped_column(String(64))
    """A base32 seed stored in the clear before migration 0014; sealed into
    ``encrypted_secret`` (and set NULL) at its next use or by ``billfold keys
    seal-totp-seeds``. Nothing writes it any more."""
    encrypted_secret: Mapped[bytes | None] = mapped_column(LargeBinary(ENCRYPTED_SEED_BYTES_MAX))
    """The base32 seed (160 random bits), envelope-encrypted."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When enrolment began, ns since the epoch."""
    confirmed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the user proved the app works; NULL while enrolment is pending."""
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    """The time step of the last accepted code; a code for it or earlier is a replay."""


class RecoveryCode(Base):
    """One single-use recovery code, stored as a hash."""

    __tablename__ = "identity_user_recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Whose code it is."""
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(TOKEN_HASH_BYTES))
    """SHA-256 of the user id and the normalized code (80 random bits)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When the set was issued, ns since the epoch."""
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the code was spent; NULL while it is usable."""

    __table_args__ = (
        Index(
            "uq_identity_user_recovery_codes_user_id_code_hash", "user_id", "code_hash", unique=True
        ),
    )


class Passkey(Base):
    """A WebAuthn credential registered by a user."""

    __tablename__ = "identity_user_passkeys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `pkey_<hex>` in the API."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Whose passkey it is."""
    name: Mapped[str] = mapped_column(String(PASSKEY_NAME_LENGTH_MAX))
    """What the user calls it."""
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(CREDENTIAL_ID_BYTES_MAX))
    """The authenticator's credential id; globally unique."""
    public_key: Mapped[bytes] = mapped_column(LargeBinary(PASSKEY_PUBLIC_KEY_BYTES_MAX))
    """The credential's COSE public key."""
    sign_count: Mapped[int] = mapped_column(BigInteger)
    """The authenticator's last signature counter; a response must exceed it (unless both 0)."""
    aaguid: Mapped[str] = mapped_column(String(36))
    """The authenticator model, as reported (unattested)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was registered, ns since the epoch."""
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it last completed a sign-in, ns since the epoch."""

    __table_args__ = (
        Index("uq_identity_user_passkeys_credential_id", "credential_id", unique=True),
        Index("ix_identity_user_passkeys_user_id", "user_id"),
    )


class WebAuthnChallenge(Base):
    """A WebAuthn challenge the server issued: expires quickly, answers once."""

    __tablename__ = "identity_user_webauthn_challenges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Who the ceremony is for."""
    purpose: Mapped[str] = mapped_column(String(16))
    """registration or authentication."""
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    """32 random bytes, echoed back signed in the client data."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was issued, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """When it stops being accepted, ns since the epoch."""
    consumed_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a response used it; NULL while unused."""

    __table_args__ = (
        CheckConstraint("purpose IN ('registration', 'authentication')", name="purpose"),
        Index("uq_identity_user_webauthn_challenges_challenge", "challenge", unique=True),
        Index("ix_identity_user_webauthn_challenges_user_id", "user_id"),
    )


class Device(Base):
    """A device key a user bound: the device signs requests and step-up answers with it."""

    __tablename__ = "identity_user_devices"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `dev_<hex>` in the API."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Whose device it is."""
    name: Mapped[str] = mapped_column(String(DEVICE_NAME_LENGTH_MAX))
    """What the user calls it."""
    algorithm: Mapped[str] = mapped_column(String(16))
    """ed25519 or p256 (ECDSA with SHA-256)."""
    public_key: Mapped[bytes] = mapped_column(LargeBinary(DEVICE_PUBLIC_KEY_BYTES_MAX))
    """DER SubjectPublicKeyInfo."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was bound, ns since the epoch."""
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a signature by it was last accepted, ns since the epoch."""
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    """When it was revoked; its signatures are refused from then on."""

    __table_args__ = (
        CheckConstraint("algorithm IN ('ed25519', 'p256')", name="algorithm"),
        Index("ix_identity_user_devices_user_id", "user_id"),
    )


class DeviceNonce(Base):
    """A nonce a device already used, kept while its timestamp could still be accepted."""

    __tablename__ = "identity_user_device_nonces"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identity_user_devices.id"), primary_key=True
    )
    """The signing device."""
    nonce: Mapped[str] = mapped_column(String(NONCE_LENGTH_MAX), primary_key=True)
    """As sent; a second request with it is a replay."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """After this the timestamp check alone refuses the request, so the row can go."""


class StepUp(Base):
    """A strong customer authentication for one action: amount, currency and payee.

    PSD2 dynamic linking: the challenge, the answer and the resulting token are all bound to
    exactly these values; a token checked against any other amount or payee is refused.
    """

    __tablename__ = "identity_user_step_ups"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7; `stp_<hex>` in the API."""
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_users.id"))
    """Who must authenticate."""
    amount: Mapped[str] = mapped_column(String(AMOUNT_TEXT_LENGTH_MAX))
    """Decimal integer in the currency's minor unit (text: up to 2**127 - 1)."""
    currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH_MAX))
    """The asset code the amount is in."""
    payee: Mapped[str] = mapped_column(String(PAYEE_LENGTH_MAX))
    """Who receives the money, as the caller names them."""
    method: Mapped[str] = mapped_column(String(8))
    """totp or device: how the user answers."""
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("identity_user_devices.id"))
    """For method device: the device that must sign."""
    challenge: Mapped[str] = mapped_column(String(64))
    """Random base64url text included in what a device signs."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    """When it was issued, ns since the epoch."""
    expires_at: Mapped[int] = mapped_column(BigInteger)
    """When the challenge stops being answerable, ns since the epoch."""
    failed_attempts: Mapped[int] = mapped_column(Integer)
    """Wrong answers so far; bounded."""
    answered_at: Mapped[int | None] = mapped_column(BigInteger)
    """When a correct answer produced the token."""
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(TOKEN_HASH_BYTES))
    """SHA-256 of the `bfu_su_…` token; NULL until answered."""
    token_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the token stops being accepted, ns since the epoch."""
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    """When the token was spent (or burnt by a mismatching check); single use."""

    __table_args__ = (
        CheckConstraint("method IN ('totp', 'device')", name="method"),
        Index("uq_identity_user_step_ups_token_hash", "token_hash", unique=True),
        Index("ix_identity_user_step_ups_user_id_expires_at", "user_id", "expires_at"),
    )
