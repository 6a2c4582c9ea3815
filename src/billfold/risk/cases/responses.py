"""Automated responses: what an enforcing rule (or an operator) does to a user beyond the
one movement: freeze the account, lower the limits, hold every outgoing movement.

Applying one writes its ``risk_responses`` row with ``detail``, the record of exactly what
it changed, so that a reversal undoes that and nothing else, and an audit entry; all in the
caller's transaction (flush only):

- ``freeze_account``: ``detail = {"accounts": [acc_…], "frozen": []}``, the user's wallet
  accounts in the movement's mode. The ledger cannot join this transaction, so the accounts
  are frozen *after* it commits by ``billfold.flows.risk_cases.enforce_responses`` (a
  ``risk_response_enforcements`` row, ``pending``, says it is still to do; the recovery
  sweep finishes it after a crash). ``frozen`` then lists the accounts the response itself
  froze (not those already frozen by someone else): only those are unfrozen on reversal.
- ``lower_limits``: a wallets limit reduction keyed by the response id, in this transaction
  (``detail = {"reduction_id": rrs_…, "limit_bps": n}``); the spending-limit check honours
  it at once.
- ``hold_outgoing``: only the row (``detail = {}``); payments reads ``active_responses`` and
  forces every outgoing movement of the user to review.

Reversal (four eyes, ``risk_response_reversal``) is in ``billfold.flows.risk_cases``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit import service as audit
from billfold.identity.users.models import EndUser
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id
from billfold.kit.pagination import Page, clamp_page_size, decode_id_cursor, encode_cursor
from billfold.risk.cases.errors import ResponseNotFound, RiskSubjectNotFound
from billfold.risk.cases.models import RiskResponseEnforcement
from billfold.risk.cases.repository import ResponseRepository
from billfold.risk.models import RiskResponse
from billfold.risk.types import Decision, Movement, Response
from billfold.wallets.accounts import OwnerKind
from billfold.wallets.limits import BPS_WHOLE
from billfold.wallets.reductions import add_reduction, lift_reduction
from billfold.wallets.repository import WalletRepository

__all__ = [
    "ACCOUNT_ID_PREFIX",
    "LOWER_LIMITS_BPS_DEFAULT",
    "RESPONSE_ID_PREFIX",
    "RESPONSE_STATES",
    "Actor",
    "apply_response",
    "apply_responses",
    "detail_of",
    "dumps_detail",
    "finish_reversal",
    "get_response",
    "list_responses",
    "response_user",
]

RESPONSE_ID_PREFIX = "rrs"
ACCOUNT_ID_PREFIX = "acc"
LOWER_LIMITS_BPS_DEFAULT = 1_000
"""An automated ``lower_limits`` leaves 10% of each limit unless configured otherwise
(``BILLFOLD_RISK_LOWER_LIMITS_BPS``)."""
RESPONSE_STATES: Final = ("active", "reversing", "reversed")
_USER_PREFIX = "usr"
_DECISION_PREFIX = "rdc"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who applied or reversed a response, as the audit log names it."""

    actor_type: str
    """``system`` (a rule) or ``operator``."""
    actor_id: str | None

    @classmethod
    def rule(cls) -> Actor:
        return cls(actor_type="system", actor_id=None)


def detail_of(response: RiskResponse) -> dict[str, object]:
    loaded = json.loads(response.detail)
    invariant(isinstance(loaded, dict), "a response's detail is a JSON object")
    return dict(loaded)


def dumps_detail(detail: Mapping[str, object]) -> str:
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"))


async def apply_responses(
    session: AsyncSession,
    *,
    decision: Decision,
    movement: Movement,
    at_ns: int,
    lower_limits_bps: int = LOWER_LIMITS_BPS_DEFAULT,
) -> list[uuid.UUID]:
    """Apply ``decision.responses`` to the movement's user, in the decision's transaction
    (flush only); the ids of the responses applied. A response of a kind already active
    on the user is not applied again, even by a decision running at the same time (the
    user's spending lock serializes them), nor is any for a movement without an end user.

    After the transaction commits, hand the returned ids to
    ``billfold.flows.risk_cases.enforce_responses`` (it freezes the accounts of a
    ``freeze_account``; the recovery sweep does it otherwise)."""
    if movement.user_id is None or not decision.responses:
        return []
    # Two decisions for one user at once (two movements, two processes) each saw no
    # response in force and both applied theirs: two freezes of one user. The user's
    # spending lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the writer
    # lock every transaction takes) makes the second wait for the first to commit, then
    # read its response. A movement that checked the user's limits holds it already.
    await WalletRepository(session).lock_holder(movement.user_id)
    applied: list[uuid.UUID] = []
    for kind in dict.fromkeys(decision.responses):  # each kind once, in order
        exists = await ResponseRepository(session).active_kind_exists(
            tenant_id=movement.tenant_id, mode=movement.mode, user_id=movement.user_id, kind=kind
        )
        if exists:
            continue
        response = await apply_response(
            session,
            tenant_id=movement.tenant_id,
            mode=movement.mode,
            user_id=movement.user_id,
            kind=Response(kind),
            decision_id=decision.id,
            actor=Actor.rule(),
            reason="; ".join(decision.reasons)[:500] or None,
            lower_limits_bps=lower_limits_bps,
            at_ns=at_ns,
        )
        applied.append(response.id)
    return applied


async def apply_response(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    user_id: uuid.UUID,
    kind: Response,
    decision_id: uuid.UUID | None,
    actor: Actor,
    reason: str | None,
    lower_limits_bps: int,
    at_ns: int,
) -> RiskResponse:
    """Write one response and its transactional effect, and audit it (flush only)."""
    invariant(0 <= lower_limits_bps <= BPS_WHOLE, "a reduction leaves 0 to 10,000 bps")
    response_id = new_id()
    repository = ResponseRepository(session)
    detail: dict[str, object] = {}
    if kind is Response.FREEZE_ACCOUNT:
        wallets = await WalletRepository(session).owner_wallets(
            tenant_id=tenant_id, mode=mode, owner_kind=OwnerKind.USER.value, owner_id=user_id
        )
        accounts = [format_id(ACCOUNT_ID_PREFIX, wallet.id) for wallet in wallets]
        detail = {"accounts": accounts, "frozen": []}
        await repository.add_enforcement(
            RiskResponseEnforcement(
                response_id=response_id,
                tenant_id=tenant_id,
                state="pending",
                attempts=0,
                created_at=at_ns,
                done_at=None,
            )
        )
    elif kind is Response.LOWER_LIMITS:
        await add_reduction(
            session,
            reduction_id=response_id,
            tenant_id=tenant_id,
            mode=mode,
            user_id=user_id,
            limit_bps=lower_limits_bps,
            now_ns=at_ns,
        )
        detail = {
            "reduction_id": format_id(RESPONSE_ID_PREFIX, response_id),
            "limit_bps": lower_limits_bps,
        }
    response = RiskResponse(
        id=response_id,
        tenant_id=tenant_id,
        mode=mode,
        user_id=user_id,
        kind=kind.value,
        decision_id=decision_id,
        state="active",
        detail=dumps_detail(detail),
        applied_at=at_ns,
        reversed_at=None,
        reversed_by=None,
    )
    await repository.add(response)
    await _audit(
        session, response, action="risk.response.applied", actor=actor, at_ns=at_ns, reason=reason
    )
    return response


async def response_user(
    session: AsyncSession, *, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> EndUser:
    """The tenant's end user a manual response names (another tenant's is absent)."""
    user = await session.get(EndUser, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise RiskSubjectNotFound("No such user.")
    return user


async def get_response(
    session: AsyncSession, *, tenant_id: uuid.UUID, response_id: uuid.UUID, for_update: bool = False
) -> RiskResponse:
    """The tenant's response (another tenant's is absent); ``for_update`` locks it until
    the transaction ends."""
    response = await ResponseRepository(session).get(
        tenant_id=tenant_id, response_id=response_id, for_update=for_update
    )
    if response is None:
        raise ResponseNotFound()
    return response


async def list_responses(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    state: str | None,
    cursor: str | None,
    limit: int | None,
) -> Page[RiskResponse]:
    """The tenant's responses, newest first, one bounded page."""
    page_size = clamp_page_size(limit)
    rows = await ResponseRepository(session).page(
        tenant_id=tenant_id,
        user_id=user_id,
        state=state,
        before_id=None if cursor is None else decode_id_cursor(cursor),
        limit=page_size + 1,
    )
    items = rows[:page_size]
    next_cursor = encode_cursor([items[-1].id.hex]) if len(rows) > page_size else None
    return Page(items=items, next_cursor=next_cursor)


async def finish_reversal(
    session: AsyncSession,
    *,
    response: RiskResponse,
    approval_id: uuid.UUID,
    reversed_by: uuid.UUID,
    at_ns: int,
) -> bool:
    """Undo the response's transactional part (lift its limit reduction, cancel a freeze
    not enforced yet), mark it ``reversed`` and audit it (flush only). The ledger part (the
    unfreeze) is done before, by the flow. False when it was reversed already."""
    repository = ResponseRepository(session)
    reversed_now = await repository.transition(
        response_id=response.id,
        from_states=("active", "reversing"),
        to_state="reversed",
        reversed_by=reversed_by,
        now_ns=at_ns,
    )
    if not reversed_now:
        return False
    if response.kind == Response.LOWER_LIMITS.value:
        await lift_reduction(session, reduction_id=response.id, now_ns=at_ns)
    if response.kind == Response.FREEZE_ACCOUNT.value:
        await repository.finish_enforcement(
            response_id=response.id, to_state="cancelled", now_ns=at_ns
        )
    await session.refresh(response)
    actor = Actor(actor_type="operator", actor_id=format_id("opr", reversed_by))
    await _audit(
        session,
        response,
        action="risk.response.reversed",
        actor=actor,
        at_ns=at_ns,
        reason=None,
        approval_id=approval_id,
    )
    return True


async def _audit(
    session: AsyncSession,
    response: RiskResponse,
    *,
    action: str,
    actor: Actor,
    at_ns: int,
    reason: str | None,
    approval_id: uuid.UUID | None = None,
) -> None:
    detail: dict[str, object] = {
        "kind": response.kind,
        "mode": response.mode,
        "user_id": format_id(_USER_PREFIX, response.user_id),
        "detail": detail_of(response),
    }
    if response.decision_id is not None:
        detail["decision_id"] = format_id(_DECISION_PREFIX, response.decision_id)
    if reason is not None:
        detail["reason"] = reason
    if approval_id is not None:
        detail["approval_id"] = format_id("apr", approval_id)
    await audit.append(
        session,
        tenant_id=response.tenant_id,
        action=action,
        occurred_at=at_ns,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        target=format_id(RESPONSE_ID_PREFIX, response.id),
        after={"response_state": response.state},
        detail=detail,
    )
