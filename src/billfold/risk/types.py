"""The vocabulary of risk: what a money movement looks like to the engine, what it decides,
and the protocols the rest of the platform holds it by.

Every money movement (top-up, withdrawal, P2P, merchant payment, refund, FX conversion)
is described as a `Movement` and passed to a `RiskDecider` before it reaches the ledger, in
the movement's own database transaction. The decider answers a `Decision`:

- ``allow``: go on;
- ``challenge``: step-up authentication is needed (PSD2 dynamic linking: a step-up token
  bound to the movement's amount, currency and payee); a request that carries a valid one
  goes on;
- ``review``: the movement is held as a pending transfer and a case opens; an analyst
  approves (the hold is posted) or rejects it (the hold is voided);
- ``block``: refused, with the decision stored to explain why.

The strongest action of the enforcing rules and the model wins (``Action.severity``);
shadow rules and shadow models are evaluated and stored, never enforced.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "Action",
    "Decision",
    "FeatureSource",
    "FeatureValue",
    "Features",
    "Movement",
    "MovementKind",
    "Response",
    "RiskDecider",
    "RuleHit",
    "Scorer",
    "ScorerRegistry",
    "ScorerSet",
]

FeatureValue = bool | int | float | str | None
Features = Mapping[str, FeatureValue]
"""Feature name → value; the names are documented in ``billfold.risk.features``."""


class Action(enum.StrEnum):
    """What a decision asks of the movement, weakest first."""

    ALLOW = "allow"
    CHALLENGE = "challenge"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def strongest(self, other: Action) -> Action:
        return self if self.severity >= other.severity else other


_SEVERITY = {Action.ALLOW: 0, Action.CHALLENGE: 1, Action.REVIEW: 2, Action.BLOCK: 3}


class MovementKind(enum.StrEnum):
    TOP_UP = "top_up"
    WITHDRAWAL = "withdrawal"
    P2P = "p2p"
    MERCHANT_PAYMENT = "merchant_payment"
    REFUND = "refund"
    FX_CONVERSION = "fx_conversion"


class Response(enum.StrEnum):
    """An automated response an enforcing rule may ask for, applied to the movement's user
    (``billfold.risk.cases``): audited, and reversible by an operator with approval."""

    FREEZE_ACCOUNT = "freeze_account"
    """The user's wallets are frozen: no money moves out or in."""
    LOWER_LIMITS = "lower_limits"
    """The user's spending limits are lowered (a risk override below the tier's)."""
    HOLD_OUTGOING = "hold_outgoing"
    """Every outgoing movement of the user is held for review."""


@dataclass(frozen=True, slots=True)
class Movement:
    """One money movement as the engine sees it, before it reaches the ledger."""

    tenant_id: uuid.UUID
    mode: str
    """``test`` or ``live`` (``billfold.identity.types.Mode`` values)."""
    kind: MovementKind
    amount: int
    """In the currency's minor unit, > 0."""
    currency: str
    occurred_at_ns: int
    user_id: uuid.UUID | None = None
    """The end user whose money moves (the payer; the receiver of a top-up); None when
    no end user is involved (a merchant refund paid by the merchant, a platform conversion)."""
    payee: str | None = None
    """Who receives it, as a prefixed API id or a provider name: ``usr_…``, ``mer_…``,
    ``provider:<name>`` (withdrawals, top-ups), ``fx:<currency>`` (conversions)."""
    merchant_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
    """The bound device that signed the request, when one did."""
    ip: str | None = None
    ip_country: str | None = None
    """ISO 3166-1 alpha-2, when known (a trusted proxy header or the configured table)."""
    reference: str | None = None
    """The movement's own API id (``pay_…``, ``ref_…``, ``cnv_…``), for cases and replay."""
    step_up_verified: bool = False
    """The request carried a step-up token the flow verified for exactly this movement:
    a ``challenge`` is then satisfied."""


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule whose condition held."""

    rule_id: uuid.UUID
    rule_version: int
    name: str
    action: Action
    score: int
    reason: str
    shadow: bool
    responses: tuple[Response, ...] = ()
    """Automated responses the rule asks for (applied only when it is enforcing)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer, as stored (``risk_decisions``) with the features it saw."""

    id: uuid.UUID
    action: Action
    score: int
    """0 to 1000: the enforcing hits' scores and the model's, capped."""
    reasons: tuple[str, ...]
    """Human-readable, one per enforcing hit (and the model's when it acted)."""
    features: Features
    hits: tuple[RuleHit, ...] = ()
    """Every hit, shadow ones included (``shadow=True``)."""
    model_score: float | None = None
    """The model's fraud probability or anomaly score in [0, 1], when a model scored."""
    ruleset_version: int | None = None
    responses: tuple[Response, ...] = ()
    """The automated responses of the enforcing hits, to apply with the decision."""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def enforced(self) -> bool:
        return self.action is not Action.ALLOW


class RiskDecider(Protocol):
    """What every payment path calls, in the movement's own transaction (the decision row
    commits with the movement, or not at all)."""

    async def decide(self, session: AsyncSession, movement: Movement) -> Decision: ...


class Scorer(Protocol):
    """A model's view of a movement: a probability of fraud (supervised) or an anomaly
    score (unsupervised), both in [0, 1]. Pure and fast: no I/O on the decision path."""

    name: str
    version: int

    def score(self, features: Features) -> float: ...


class FeatureSource(Protocol):
    """Computes a movement's features (``billfold.risk.features``): counters in Redis, in
    the process or in the database, plus what the database knows of the user."""

    @property
    def names(self) -> frozenset[str]:
        """Every feature name `compute` returns (rules may use only these)."""
        ...

    async def compute(self, session: AsyncSession, movement: Movement) -> dict[str, FeatureValue]:
        """The features as they stand before this movement."""
        ...

    async def record(self, session: AsyncSession, movement: Movement) -> None:
        """Count the movement (after it was decided) in the velocity counters and history."""
        ...


@dataclass(frozen=True, slots=True)
class ScorerSet:
    """A tenant's models: the one whose score may act, and those only scored and stored."""

    enforcing: Scorer | None = None
    shadow: tuple[Scorer, ...] = ()


class ScorerRegistry(Protocol):
    """Where the engine finds a tenant's models (``billfold.risk.scoring``); cheap to call
    on every decision (models are cached in memory and refreshed when a version changes)."""

    def scorers_for(self, tenant_id: uuid.UUID, mode: str) -> ScorerSet: ...

    def observe(
        self, tenant_id: uuid.UUID, mode: str, scorer: Scorer, features: Features, score: float
    ) -> None:
        """Every score the engine computed (for drift detection); must not block."""
        ...
