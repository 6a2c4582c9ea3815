"""The vocabulary of identity: modes, scopes, tenant states and the authenticated principal.

``Mode`` and ``Principal`` are the authentication contract and live in ``billfold.kit.auth``
(so a domain that imports only the kit, such as the ledger, can have routes); they are
re-exported here. Later domains scope every query by the principal's ``(tenant_id, mode)``
(``Principal.ledger_tenant_id`` for the ledger): test-mode and live-mode data never mix.
"""

from __future__ import annotations

from enum import StrEnum

from billfold.kit.auth import Mode, Principal

__all__ = ["LIVE_ONLY_SCOPES", "Mode", "Principal", "Scope", "TenantStatus"]


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
    FEES_READ = "fees:read"
    """Read fee schedules and preview fees."""
    FEES_WRITE = "fees:write"
    """Create and replace fee schedules."""
    FX_READ = "fx:read"
    """Read FX rates, quotes and settings."""
    FX_WRITE = "fx:write"
    """Create FX quotes and convert with them."""
    AUDIT_READ = "audit:read"
    """Read the tenant's audit log, checkpoints and inclusion proofs (live keys only)."""
    TENANT_ADMIN = "tenant:admin"
    """Manage the tenant itself, including its API keys (in the key's own mode)."""
    PII_WRITE = "pii:write"
    """Store end users' personal data, tokenize card and account numbers, record consent."""
    PII_READ = "pii:read"
    """See personal data unmasked, export it, and erase it (crypto-shredding)."""
    PII_DETOKENIZE = "pii:detokenize"
    """Turn a token back into the card or account number; every use is audited."""
    EVENTS_READ = "events:read"
    """Read events, live event streams and webhook endpoints and deliveries."""
    WEBHOOKS_WRITE = "webhooks:write"
    """Create, change, rotate and delete webhook endpoints; replay events."""
    RISK_READ = "risk:read"
    """Read risk decisions: what the engine saw, decided and why."""
    RISK_WRITE = "risk:write"
    """Post fraud labels of the tenant's movements (a simulator's ground truth)."""


LIVE_ONLY_SCOPES: frozenset[Scope] = frozenset({Scope.AUDIT_READ})
"""Scopes only a live key may carry: their routes refuse test keys (the audit log records
the tenant's live acts too), so a test key is refused them when it is made."""


class TenantStatus(StrEnum):
    """A suspended tenant's credentials authenticate nothing."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
