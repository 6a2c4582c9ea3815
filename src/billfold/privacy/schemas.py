"""Privacy's API models. Values are masked unless the caller holds ``pii:read``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from billfold.identity.schemas import datetime_from_ns
from billfold.kit.ids import format_id
from billfold.privacy.fields import LENGTH_MAX, PiiField
from billfold.privacy.masking import mask_tail
from billfold.privacy.models import Consent, Token
from billfold.privacy.service import TOKEN_ID_PREFIX, Erasure

__all__ = [
    "ConsentList",
    "ConsentRequest",
    "ConsentResponse",
    "DetokenizeRequest",
    "DetokenizedResponse",
    "ErasureResponse",
    "ExportResponse",
    "PiiResponse",
    "PiiSearchRequest",
    "PiiSearchResponse",
    "PiiUpdateRequest",
    "TokenResponse",
    "TokenizeRequest",
]

TokenKind = Literal["pan", "bank_account"]


class PiiUpdateRequest(BaseModel):
    """The fields to store or replace; the others are left as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=LENGTH_MAX[PiiField.NAME])
    email: str | None = Field(default=None, max_length=LENGTH_MAX[PiiField.EMAIL])
    phone: str | None = Field(default=None, max_length=32, examples=["+8613812345678"])
    national_id: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=LENGTH_MAX[PiiField.ADDRESS])
    bank_account: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _at_least_one(self) -> PiiUpdateRequest:
        if not self.values():
            raise ValueError("give at least one field")
        return self

    def values(self) -> dict[PiiField, str]:
        return {
            field: value for field in PiiField if (value := getattr(self, field.value)) is not None
        }


class PiiResponse(BaseModel):
    user_id: str
    masked: bool = Field(description="False only for callers holding pii:read.")
    fields: dict[PiiField, str]


class PiiSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: PiiField
    value: str = Field(min_length=1, max_length=LENGTH_MAX[PiiField.ADDRESS])


class PiiSearchResponse(BaseModel):
    user_ids: list[str] = Field(description="At most 100, in id order.")


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TokenKind
    value: str = Field(min_length=1, max_length=64, examples=["4242 4242 4242 4242"])


class TokenResponse(BaseModel):
    id: str
    kind: TokenKind
    token: str
    last4: str
    masked: str = Field(examples=["**** 4242"])
    created_at: datetime

    @classmethod
    def from_model(cls, row: Token) -> TokenResponse:
        return cls(
            id=format_id(TOKEN_ID_PREFIX, row.id),
            kind=row.kind,
            token=row.token,
            last4=row.last4,
            masked=mask_tail(row.token),
            created_at=datetime_from_ns(row.created_at),
        )


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TokenKind
    token: str = Field(min_length=1, max_length=40)


class DetokenizedResponse(BaseModel):
    id: str
    kind: TokenKind
    token: str
    value: str


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=64, examples=["marketing"])
    version: str = Field(min_length=1, max_length=32, examples=["2026-01"])


class ConsentResponse(BaseModel):
    id: str
    purpose: str
    version: str
    granted_at: datetime
    withdrawn_at: datetime | None

    @classmethod
    def from_model(cls, row: Consent) -> ConsentResponse:
        return cls(
            id=format_id("cns", row.id),
            purpose=row.purpose,
            version=row.version,
            granted_at=datetime_from_ns(row.granted_at),
            withdrawn_at=None if row.withdrawn_at is None else datetime_from_ns(row.withdrawn_at),
        )


class ConsentList(BaseModel):
    items: list[ConsentResponse]


class ExportedUser(BaseModel):
    id: str
    email: str | None
    phone: str | None
    handle: str | None
    status: str
    created_at_ns: int


class ExportedConsent(BaseModel):
    purpose: str
    version: str
    granted_at_ns: int
    withdrawn_at_ns: int | None


class ExportResponse(BaseModel):
    """Everything held about one user (GDPR art. 15 and 20), unmasked."""

    user: ExportedUser
    pii: dict[PiiField, str]
    consents: list[ExportedConsent]


class ErasureResponse(BaseModel):
    user_id: str
    data_keys_destroyed: int
    values_deleted: int
    consents_withdrawn: int

    @classmethod
    def from_erasure(cls, erasure: Erasure) -> ErasureResponse:
        return cls(
            user_id=format_id("usr", erasure.user_id),
            data_keys_destroyed=erasure.data_keys_destroyed,
            values_deleted=erasure.values_deleted,
            consents_withdrawn=erasure.consents_withdrawn,
        )
