"""What a money movement's flow does around the risk decision, shared by payments and FX:
the request's context (device, IP, country), the decision itself with the automated
responses in force, and the answers a flow gives for each action.

**No engine configured** (``decider`` None, until ``install_risk`` puts one on
``app.state.risk``): every movement is allowed and nothing is stored — risk is off.

**Effective action** (:func:`judge`): the decider's action, then

- ``challenge`` with ``Movement.step_up_verified`` (the request carried a step-up token the
  flow verified for exactly this movement): allowed;
- ``challenge`` on a movement nobody can step up for (no end user: merchant refunds and
  conversions made with API keys): escalated to ``review``;
- ``hold_outgoing`` in force on the user (``billfold.risk.reviews.active_responses``):
  outgoing movements (withdrawal, P2P, merchant payment) are held for review at least
  (the stored decision keeps the engine's own action; the case says why it is open);
- ``freeze_account`` in force on the user: every movement of theirs is blocked at once
  (the ledger freezes their accounts when the response is enforced, which stops money
  coming in too).

**Automated responses** the decision asks for (its enforcing hits' ``responses``) are
applied to the user by the payment flows in the same transaction
(``billfold.payments.flows.gate.decide``, with ``billfold.risk.cases.responses``); a
freeze's ledger side is enforced by the risk cases' recovery sweep
(``billfold.flows.risk_cases.recover``).

The decision row (written by the decider) commits in the movement's own transaction.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.errors import Forbidden, invariant
from billfold.kit.ids import format_id
from billfold.risk.reviews import active_responses, open_case
from billfold.risk.types import Action, Decision, Movement, MovementKind, Response, RiskDecider

__all__ = [
    "DECISION_ID_PREFIX",
    "IP_TEXT_LENGTH_MAX",
    "OUTGOING_KINDS",
    "RiskBlocked",
    "RiskContext",
    "Verdict",
    "client_ip",
    "ip_country",
    "judge",
    "open_review",
    "request_context",
]

DECISION_ID_PREFIX = "rdc"
OUTGOING_KINDS = frozenset(
    {MovementKind.WITHDRAWAL, MovementKind.P2P, MovementKind.MERCHANT_PAYMENT}
)
IP_TEXT_LENGTH_MAX = 45
"""The longest textual IPv6 address; anything longer is not an address."""
_NANOSECONDS_PER_SECOND = 1_000_000_000


class RiskBlocked(Forbidden):
    """403 ``risk_blocked``: the risk engine refused the movement. Carries only the
    decision's ``decision_id`` (``rdc_…``), never the rules that hit."""

    code = "risk_blocked"
    title = "Refused by risk controls"


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the HTTP request tells the risk engine about a movement, passed from the
    router to the flow in one argument (the default: nothing known)."""

    device_id: uuid.UUID | None = None
    """The bound device whose signature over the request verified, when one did."""
    ip: str | None = None
    ip_country: str | None = None
    step_up_token: str | None = None
    """A step-up token for flows whose body has no field of its own for it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The effective action on a movement and the stored decision behind it (None: no
    engine configured)."""

    action: Action
    decision: Decision | None
    movement: Movement

    @property
    def decision_id(self) -> uuid.UUID | None:
        return None if self.decision is None else self.decision.id

    @property
    def public_decision_id(self) -> str | None:
        decision_id = self.decision_id
        return None if decision_id is None else format_id(DECISION_ID_PREFIX, decision_id)

    def blocked(self) -> RiskBlocked:
        return RiskBlocked(
            "The movement was refused by risk controls.", decision_id=self.public_decision_id
        )


async def judge(
    session: AsyncSession,
    decider: RiskDecider | None,
    movement: Movement,
    *,
    challengeable: bool,
) -> Verdict:
    """Decide `movement` in the caller's transaction (see the module docstring);
    `challengeable`: an end user can answer a step-up for it."""
    if decider is None:
        return Verdict(Action.ALLOW, None, movement)
    responses: frozenset[Response] = frozenset()
    if movement.user_id is not None:
        responses = await active_responses(
            session, tenant_id=movement.tenant_id, mode=movement.mode, user_id=movement.user_id
        )
    held = Response.HOLD_OUTGOING in responses and movement.kind in OUTGOING_KINDS
    decision = await decider.decide(session, movement)
    action = decision.action
    if action is Action.CHALLENGE and movement.step_up_verified:
        action = Action.ALLOW
    if action is Action.CHALLENGE and not challengeable:
        action = Action.REVIEW
    if held:
        action = action.strongest(Action.REVIEW)
    if Response.FREEZE_ACCOUNT in responses:
        action = Action.BLOCK
    return Verdict(action, decision, movement)


async def open_review(
    session: AsyncSession, verdict: Verdict, *, reference: str, hold_s: int, at_ns: int
) -> uuid.UUID:
    """Open the case of a movement held for review, in the movement's transaction."""
    invariant(verdict.decision is not None, "a review has a stored decision")
    assert verdict.decision is not None
    return await open_case(
        session,
        decision=verdict.decision,
        movement=verdict.movement,
        reference=reference,
        hold_expires_at_ns=at_ns + hold_s * _NANOSECONDS_PER_SECOND,
        at_ns=at_ns,
    )


def _valid_ip(text: str | None) -> str | None:
    if text is None or len(text) > IP_TEXT_LENGTH_MAX:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_ip(request: Any, *, trusted_proxies: frozenset[str]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the first
    hop of its ``X-Forwarded-For`` (anything unparsable: the peer's)."""
    peer = None if request.client is None else _valid_ip(request.client.host)
    if peer is None or peer not in trusted_proxies:
        return peer
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded is None:
        return peer
    return _valid_ip(forwarded.split(",", 1)[0]) or peer


def ip_country(request: Any, *, header: str | None) -> str | None:
    """The client's country from the trusted header the settings name (ISO 3166-1
    alpha-2, upper case), or None."""
    if header is None:
        return None
    value: str | None = request.headers.get(header)
    if value is None or len(value) != 2 or not value.isascii() or not value.isalpha():
        return None
    return value.upper()


def request_context(
    request: Any, *, device_id: uuid.UUID | None = None, step_up_token: str | None = None
) -> RiskContext:
    """The risk context of an HTTP request, by the app's settings
    (`risk_trusted_proxies`, `risk_ip_country_header`)."""
    settings = getattr(request.app.state, "settings", None)
    proxies = frozenset(getattr(settings, "risk_trusted_proxies", None) or ())
    header = getattr(settings, "risk_ip_country_header", None)
    return RiskContext(
        device_id=device_id,
        ip=client_ip(request, trusted_proxies=proxies),
        ip_country=ip_country(request, header=header),
        step_up_token=step_up_token,
    )
