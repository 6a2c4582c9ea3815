"""The API's request and response models for tenants' API keys, and the problem document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from billfold.identity.credentials import key_prefix
from billfold.identity.models import API_KEY_NAME_LENGTH_MAX, ApiKey
from billfold.identity.service import scopes_of
from billfold.identity.types import Mode, Scope
from billfold.kit.ids import format_id
from billfold.kit.pagination import Page

__all__ = [
    "API_KEY_ID_PREFIX",
    "TENANT_ID_PREFIX",
    "ApiKeyCreateRequest",
    "ApiKeyCreated",
    "ApiKeyPage",
    "ApiKeyResponse",
    "Problem",
    "datetime_from_ns",
    "ns_from_datetime",
]

TENANT_ID_PREFIX = "ten"
API_KEY_ID_PREFIX = "key"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOSECONDS_PER_MICROSECOND = 1000


def datetime_from_ns(value: int) -> datetime:
    """An aware UTC datetime for ns since the epoch (exact to the microsecond)."""
    return _EPOCH + timedelta(microseconds=value // _NANOSECONDS_PER_MICROSECOND)


def ns_from_datetime(value: datetime) -> int:
    """Ns since the epoch for an aware datetime, computed exactly (no float)."""
    return (value - _EPOCH) // timedelta(microseconds=1) * _NANOSECONDS_PER_MICROSECOND


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else datetime_from_ns(value)


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error is rendered."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://billfold.dev/problems/unauthorized"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description="Stable and machine-readable: branch on this.")


class ApiKeyCreateRequest(BaseModel):
    """A new API key for the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=API_KEY_NAME_LENGTH_MAX)
    mode: Mode | None = Field(
        default=None, description="The caller's own mode, which is also the default."
    )
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (at most 10 years away)."
    )


class ApiKeyResponse(BaseModel):
    """An API key as listed: never its secret nor its hash."""

    id: str = Field(examples=["key_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"])
    tenant_id: str = Field(examples=["ten_0192f3a1c2d37b4e8a9b0c1d2e3f4a5b"])
    name: str
    mode: Mode
    scopes: list[Scope]
    prefix: str = Field(description="The key's non-secret start, to recognise it by.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")

    @classmethod
    def from_model(cls, api_key: ApiKey) -> ApiKeyResponse:
        return cls(**_api_key_fields(api_key))


def _api_key_fields(api_key: ApiKey) -> dict[str, Any]:
    mode = Mode(api_key.mode)
    return {
        "id": format_id(API_KEY_ID_PREFIX, api_key.id),
        "tenant_id": format_id(TENANT_ID_PREFIX, api_key.tenant_id),
        "name": api_key.name,
        "mode": mode,
        "scopes": sorted(scopes_of(api_key)),
        "prefix": key_prefix(mode=mode, api_key_id=api_key.id),
        "created_at": datetime_from_ns(api_key.created_at),
        "expires_at": _optional_datetime(api_key.expires_at),
        "revoked_at": _optional_datetime(api_key.revoked_at),
        "last_used_at": _optional_datetime(api_key.last_used_at),
    }


class ApiKeyCreated(ApiKeyResponse):
    """A key just created, with the one and only copy of its secret."""

    secret: str = Field(description="The whole API key. Shown once: store it now.")

    @classmethod
    def from_created(cls, api_key: ApiKey, *, secret: str) -> ApiKeyCreated:
        return cls(**_api_key_fields(api_key), secret=secret)


class ApiKeyPage(BaseModel):
    """One page of API keys; pass `next_cursor` back as `cursor` for the next one."""

    items: list[ApiKeyResponse]
    next_cursor: str | None

    @classmethod
    def from_page(cls, page: Page[ApiKey]) -> ApiKeyPage:
        items = [ApiKeyResponse.from_model(api_key) for api_key in page.items]
        return cls(items=items, next_cursor=page.next_cursor)
