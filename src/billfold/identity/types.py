"""The vocabulary of identity: modes, scopes, tenant states and the authenticated principal.

``Mode`` and ``Principal`` are the authentication contract and live in ``billfold.kit.auth``
(so a domain that imports only the kit, such as the ledger, can have routes); they are
re-exported here. Later domains scope every query by the principal's ``(tenant_id, mode)``
(``Principal.ledger_tenant_id`` for the ledger): test-mode and live-mode data never mix.
"""

from __future__ import annotations

from enum import StrEnum

from billfold.kit.auth import Mode, Principal

__all__ = ["Mode", "Principal", "Scope", "TenantStatus"]


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
    WALLETS_READ = "wallets:read"
    """Read wallets, their balances and the tenant's system accounts."""
    USERS_ADMIN = "users:admin"
    """Manage the tenant's end users."""
    TENANT_ADMIN = "tenant:admin"
    """Manage the tenant itself, including its API keys (in the key's own mode)."""


class TenantStatus(StrEnum):
    """A suspended tenant's credentials authenticate nothing."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
