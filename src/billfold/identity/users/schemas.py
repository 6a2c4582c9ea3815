"""The API's request and response models for end users, sign-in and their credentials.

Every request model forbids unknown fields and bounds every string and list, except the
WebAuthn credentials, which browsers extend over time (unknown members are ignored there,
known ones still bounded).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from billfold.identity.schemas import TENANT_ID_PREFIX, datetime_from_ns
from billfold.identity.types import Mode
from billfold.identity.users.errors import InvalidDeviceKey
from billfold.identity.users.identifiers import IDENTIFIER_LENGTH_MAX
from billfold.identity.users.models import (
    DEVICE_NAME_LENGTH_MAX,
    EMAIL_LENGTH_MAX,
    HANDLE_LENGTH_MAX,
    PASSKEY_NAME_LENGTH_MAX,
    PAYEE_LENGTH_MAX,
    Device,
    EndUser,
    Passkey,
    StepUp,
    UserSession,
)
from billfold.identity.users.passwords import PASSWORD_LENGTH_MAX
from billfold.identity.users.recovery_codes import RECOVERY_CODE_LENGTH_MAX
from billfold.identity.users.sessions import IssuedTokens
from billfold.identity.users.signatures import SIGNATURE_LENGTH_MAX, DeviceAlgorithm
from billfold.identity.users.tokens import USER_TOKEN_LENGTH_MAX
from billfold.identity.users.types import (
    DEVICE_ID_PREFIX,
    PASSKEY_ID_PREFIX,
    SESSION_ID_PREFIX,
    STEP_UP_ID_PREFIX,
    USER_ID_PREFIX,
)
from billfold.kit.fields import JsonInt
from billfold.kit.http.openapi import exactly_one_of
from billfold.kit.ids import format_id
from billfold.kit.money import AMOUNT_MAX

__all__ = [
    "DeviceBindRequest",
    "DeviceList",
    "DeviceResponse",
    "DeviceSignatureResponse",
    "LoginRequest",
    "LoginResponse",
    "MeResponse",
    "MfaCompleteRequest",
    "MfaRequiredResponse",
    "MfaTokenRequest",
    "PasskeyAssertion",
    "PasskeyList",
    "PasskeyOptionsResponse",
    "PasskeyRegistered",
    "PasskeyRegistrationRequest",
    "PasskeyResponse",
    "PasswordRequest",
    "RecoveryCodesResponse",
    "RefreshRequest",
    "SessionList",
    "SessionResponse",
    "SessionsRevoked",
    "StepUpAnswerRequest",
    "StepUpChallengeResponse",
    "StepUpRequest",
    "StepUpTokenResponse",
    "TokenResponse",
    "TotpCodeRequest",
    "TotpConfirmRequest",
    "TotpEnrolmentResponse",
    "UserCreateRequest",
    "UserPage",
    "UserResponse",
]

_STRICT = ConfigDict(extra="forbid")
_BROWSER = ConfigDict(extra="ignore", populate_by_name=True)


def _public_id(prefix: str) -> str:
    return f"^{prefix}_[0-9a-f]{{32}}$"


_CODE_LENGTH_MAX = 16
# Base64url sizes of what a browser sends: client data is a small JSON document, the
# attestation object carries the public key (and, for attested formats, certificates).
_ID_LENGTH_MAX = 1400
_CLIENT_DATA_LENGTH_MAX = 4096
_ATTESTATION_LENGTH_MAX = 32_768
_AUTHENTICATOR_DATA_LENGTH_MAX = 4096
_TRANSPORTS_MAX = 8


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else datetime_from_ns(value)


class UserCreateRequest(BaseModel):
    """A new end user in the API key's tenant and mode; at least one identifier."""

    model_config = _STRICT

    email: str | None = Field(default=None, min_length=1, max_length=EMAIL_LENGTH_MAX)
    phone: str | None = Field(default=None, min_length=1, max_length=32)
    handle: str | None = Field(default=None, min_length=1, max_length=HANDLE_LENGTH_MAX)
    password: str = Field(min_length=1, max_length=PASSWORD_LENGTH_MAX)


class UserResponse(BaseModel):
    """An end user as the tenant's backend sees them: never a credential."""

    id: str = Field(examples=["usr_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"])
    tenant_id: str
    mode: Mode
    email: str | None
    phone: str | None
    handle: str | None
    status: Literal["active", "disabled"]
    locked_until: datetime | None = Field(description="Sign-in refused until then.")
    created_at: datetime

    @classmethod
    def from_model(cls, user: EndUser) -> UserResponse:
        return cls(**_user_fields(user))


def _user_fields(user: EndUser) -> dict[str, Any]:
    return {
        "id": format_id(USER_ID_PREFIX, user.id),
        "tenant_id": format_id(TENANT_ID_PREFIX, user.tenant_id),
        "mode": Mode(user.mode),
        "email": user.email,
        "phone": user.phone,
        "handle": user.handle,
        "status": user.status,
        "locked_until": _optional_datetime(user.locked_until),
        "created_at": datetime_from_ns(user.created_at),
    }


class UserPage(BaseModel):
    items: list[UserResponse]
    next_cursor: str | None


class MeResponse(UserResponse):
    """The signed-in user, with the second factors they can answer with."""

    mfa_methods: list[str]

    @classmethod
    def from_user(cls, user: EndUser, *, mfa_methods: list[str]) -> MeResponse:
        return cls(**_user_fields(user), mfa_methods=mfa_methods)


class LoginRequest(BaseModel):
    """The password step of a sign-in, for one tenant's wallet in one mode."""

    model_config = _STRICT

    tenant_id: str = Field(
        min_length=1,
        max_length=40,
        # Documented only: a malformed id stays a 400 `invalid_id` (the router parses it).
        json_schema_extra={"pattern": _public_id(TENANT_ID_PREFIX)},
        examples=["ten_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"],
    )
    mode: Mode
    identifier: str = Field(
        min_length=1,
        max_length=IDENTIFIER_LENGTH_MAX,
        description="Email, E.164 phone number (+…) or handle.",
    )
    password: str = Field(min_length=1, max_length=PASSWORD_LENGTH_MAX)


class TokenResponse(BaseModel):
    """A session's token pair; the refresh token is spent by its first use."""

    session_id: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme's name)
    access_token: str = Field(description="`bfu_at_…`: send as `Authorization: Bearer …`.")
    access_token_expires_at: datetime
    refresh_token: str = Field(description="`bfu_rt_…`: single use; keep the new one.")
    refresh_token_expires_at: datetime

    @classmethod
    def from_issued(cls, issued: IssuedTokens) -> TokenResponse:
        return cls(
            session_id=format_id(SESSION_ID_PREFIX, issued.session_id),
            access_token=issued.access_token,
            access_token_expires_at=datetime_from_ns(issued.access_token_expires_at),
            refresh_token=issued.refresh_token,
            refresh_token_expires_at=datetime_from_ns(issued.refresh_token_expires_at),
        )


class MfaRequiredResponse(BaseModel):
    mfa_token: str = Field(description="`bfu_mfa_…`: present it with the second factor.")
    expires_at: datetime
    methods: list[str] = Field(examples=[["totp", "passkey", "recovery_code"]])


class LoginResponse(BaseModel):
    """Either tokens (no second factor enrolled) or what the second step needs."""

    status: Literal["authenticated", "mfa_required"]
    tokens: TokenResponse | None = None
    mfa: MfaRequiredResponse | None = None


class MfaTokenRequest(BaseModel):
    model_config = _STRICT

    mfa_token: str = Field(min_length=1, max_length=USER_TOKEN_LENGTH_MAX)


class _AssertionResponse(BaseModel):
    model_config = _BROWSER

    client_data_json: str = Field(alias="clientDataJSON", max_length=_CLIENT_DATA_LENGTH_MAX)
    authenticator_data: str = Field(
        alias="authenticatorData", max_length=_AUTHENTICATOR_DATA_LENGTH_MAX
    )
    signature: str = Field(max_length=1024)
    user_handle: str | None = Field(default=None, alias="userHandle", max_length=_ID_LENGTH_MAX)


class PasskeyAssertion(BaseModel):
    """The JSON of `navigator.credentials.get()`'s result (`PublicKeyCredential.toJSON()`)."""

    model_config = _BROWSER

    id: str = Field(max_length=_ID_LENGTH_MAX)
    raw_id: str = Field(alias="rawId", max_length=_ID_LENGTH_MAX)
    type: Literal["public-key"]
    response: _AssertionResponse

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class MfaCompleteRequest(BaseModel):
    """The second step: exactly one of the three answers."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("totp_code", "recovery_code", "passkey")
    )

    mfa_token: str = Field(min_length=1, max_length=USER_TOKEN_LENGTH_MAX)
    totp_code: str | None = Field(default=None, min_length=1, max_length=_CODE_LENGTH_MAX)
    recovery_code: str | None = Field(
        default=None, min_length=1, max_length=RECOVERY_CODE_LENGTH_MAX
    )
    passkey: PasskeyAssertion | None = None

    @model_validator(mode="after")
    def _exactly_one_answer(self) -> MfaCompleteRequest:
        given = [self.totp_code, self.recovery_code, self.passkey]
        if sum(answer is not None for answer in given) != 1:
            raise ValueError("give exactly one of totp_code, recovery_code and passkey")
        return self


class RefreshRequest(BaseModel):
    model_config = _STRICT

    refresh_token: str = Field(min_length=1, max_length=USER_TOKEN_LENGTH_MAX)


class SessionResponse(BaseModel):
    id: str
    methods: str = Field(examples=["password+totp"])
    created_at: datetime
    expires_at: datetime
    refreshed_at: datetime | None
    current: bool = Field(description="Whether the caller's access token belongs to it.")

    @classmethod
    def from_model(cls, session: UserSession, *, current: bool) -> SessionResponse:
        return cls(
            id=format_id(SESSION_ID_PREFIX, session.id),
            methods=session.methods,
            created_at=datetime_from_ns(session.created_at),
            expires_at=datetime_from_ns(session.expires_at),
            refreshed_at=_optional_datetime(session.refreshed_at),
            current=current,
        )


class SessionList(BaseModel):
    items: list[SessionResponse]


class SessionsRevoked(BaseModel):
    revoked: int


class TotpEnrolmentResponse(BaseModel):
    """The seed, shown this once: the app scans `provisioning_uri` as a QR code."""

    secret: str
    provisioning_uri: str
    digits: int = 6
    period_s: int = 30
    algorithm: Literal["SHA1"] = "SHA1"


class TotpCodeRequest(BaseModel):
    model_config = _STRICT

    code: str = Field(min_length=1, max_length=_CODE_LENGTH_MAX)


class RecoveryCodesResponse(BaseModel):
    recovery_codes: list[str] | None = Field(
        description="Shown this once, when issued; store them offline. Null when none were."
    )


class PasswordRequest(BaseModel):
    model_config = _STRICT

    password: str = Field(
        min_length=1,
        max_length=PASSWORD_LENGTH_MAX,
        description="The user's password, asked again: an access token alone is not enough.",
    )


class TotpConfirmRequest(TotpCodeRequest, PasswordRequest):
    """A code from the app, and the password asked again."""


class PasskeyOptionsResponse(BaseModel):
    """`publicKey` options for the browser's WebAuthn call (binary members in base64url)."""

    options: dict[str, Any]


class _AttestationResponse(BaseModel):
    model_config = _BROWSER

    client_data_json: str = Field(alias="clientDataJSON", max_length=_CLIENT_DATA_LENGTH_MAX)
    attestation_object: str = Field(alias="attestationObject", max_length=_ATTESTATION_LENGTH_MAX)
    transports: list[str] | None = Field(default=None, max_length=_TRANSPORTS_MAX)


class _RegistrationCredential(BaseModel):
    model_config = _BROWSER

    id: str = Field(max_length=_ID_LENGTH_MAX)
    raw_id: str = Field(alias="rawId", max_length=_ID_LENGTH_MAX)
    type: Literal["public-key"]
    response: _AttestationResponse


class PasskeyRegistrationRequest(PasswordRequest):
    model_config = _STRICT

    name: str = Field(min_length=1, max_length=PASSKEY_NAME_LENGTH_MAX)
    credential: _RegistrationCredential

    def credential_json(self) -> dict[str, Any]:
        return self.credential.model_dump(by_alias=True, exclude_none=True)


class PasskeyResponse(BaseModel):
    id: str
    name: str
    aaguid: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_model(cls, passkey: Passkey) -> PasskeyResponse:
        return cls(
            id=format_id(PASSKEY_ID_PREFIX, passkey.id),
            name=passkey.name,
            aaguid=passkey.aaguid,
            created_at=datetime_from_ns(passkey.created_at),
            last_used_at=_optional_datetime(passkey.last_used_at),
        )


class PasskeyRegistered(BaseModel):
    passkey: PasskeyResponse
    recovery_codes: list[str] | None = Field(
        description="Issued with the first second factor only, shown this once."
    )


class PasskeyList(BaseModel):
    items: list[PasskeyResponse]


class DeviceBindRequest(PasswordRequest):
    model_config = _STRICT

    name: str = Field(min_length=1, max_length=DEVICE_NAME_LENGTH_MAX)
    algorithm: DeviceAlgorithm
    public_key: str = Field(
        min_length=1,
        max_length=300,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="DER SubjectPublicKeyInfo, base64url.",
    )

    def public_key_der(self) -> bytes:
        text = self.public_key.rstrip("=")
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError) as error:
            raise InvalidDeviceKey("public_key is not valid base64url.") from error


class DeviceResponse(BaseModel):
    id: str
    name: str
    algorithm: DeviceAlgorithm
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, device: Device) -> DeviceResponse:
        return cls(
            id=format_id(DEVICE_ID_PREFIX, device.id),
            name=device.name,
            algorithm=DeviceAlgorithm(device.algorithm),
            created_at=datetime_from_ns(device.created_at),
            last_used_at=_optional_datetime(device.last_used_at),
            revoked_at=_optional_datetime(device.revoked_at),
        )


class DeviceList(BaseModel):
    items: list[DeviceResponse]


class DeviceSignatureResponse(BaseModel):
    device_id: str
    verified: Literal[True] = True


class StepUpRequest(BaseModel):
    """The action to authenticate: exactly what the money movement will use."""

    model_config = _STRICT

    amount: JsonInt = Field(ge=1, le=AMOUNT_MAX, description="Minor units (an integer).")
    currency: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    payee: str = Field(min_length=1, max_length=PAYEE_LENGTH_MAX)
    method: Literal["totp", "device"]
    device_id: str | None = Field(
        default=None,
        max_length=40,
        # Documented only, as `tenant_id` of a sign-in: a malformed id stays a 400.
        json_schema_extra={"pattern": _public_id(DEVICE_ID_PREFIX)},
    )


class StepUpChallengeResponse(BaseModel):
    id: str
    amount: int
    currency: str
    payee: str
    method: Literal["totp", "device"]
    device_id: str | None
    challenge: str
    message_to_sign: str | None = Field(
        description="For method device: the exact text (UTF-8) the device signs."
    )
    expires_at: datetime

    @classmethod
    def from_model(cls, step_up: StepUp, *, message: bytes) -> StepUpChallengeResponse:
        device_id = step_up.device_id
        return cls(
            id=format_id(STEP_UP_ID_PREFIX, step_up.id),
            amount=int(step_up.amount),
            currency=step_up.currency,
            payee=step_up.payee,
            method="device" if step_up.method == "device" else "totp",
            device_id=None if device_id is None else format_id(DEVICE_ID_PREFIX, device_id),
            challenge=step_up.challenge,
            message_to_sign=message.decode() if step_up.method == "device" else None,
            expires_at=datetime_from_ns(step_up.expires_at),
        )


class StepUpAnswerRequest(BaseModel):
    """Exactly one: the TOTP code, or the device's base64url signature."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("totp_code", "signature")
    )

    totp_code: str | None = Field(default=None, min_length=1, max_length=_CODE_LENGTH_MAX)
    signature: str | None = Field(default=None, min_length=1, max_length=SIGNATURE_LENGTH_MAX)

    @model_validator(mode="after")
    def _exactly_one_answer(self) -> StepUpAnswerRequest:
        if (self.totp_code is None) == (self.signature is None):
            raise ValueError("give exactly one of totp_code and signature")
        return self


class StepUpTokenResponse(BaseModel):
    step_up_token: str = Field(description="`bfu_su_…`: single use, for exactly this action.")
    expires_at: datetime
