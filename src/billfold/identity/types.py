"""The vocabulary of identity: modes, scopes, tenant states and the authenticated principal.

Later domains import :class:`Principal` (through ``billfold.identity.auth``) and scope every
query by its ``(tenant_id, mode)``: test-mode and live-mode data never mix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Mode", "Principal", "Scope", "TenantStatus"]


class Mode(StrEnum):
    """Whether a credential touches real money (``live``) or the sandbox (``test``)."""

    TEST = "test"
    LIVE = "live"


class Scope(StrEnum):
    """The fixed set of permissions an API key can carry. Clients depend on these names."""

    LEDGER_READ = "ledger:read"
    """Read ledger accounts, transfers and balances."""
    LEDGER_WRITE = "ledger:write"
    """Create ledger accounts and transfers."""
    PAYMENTS_READ = "payments:read"
    """Read payments, refunds and disputes."""
    PAYMENTS_WRITE = "payments:write"
    """Create, capture, void and refund payments."""
    USERS_ADMIN = "users:admin"
    """Manage the tenant's end users."""
    TENANT_ADMIN = "tenant:admin"
    """Manage the tenant itself, including its API keys (in the key's own mode)."""


class TenantStatus(StrEnum):
    """A suspended tenant's credentials authenticate nothing."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the key that proved it, its mode and its scopes."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    mode: Mode
    scopes: frozenset[Scope]
