"""Four-eyes approvals executed outside identity: manual ledger adjustments and account
unfreezes (on the ledger), key rotations (in the key hierarchy), limit increases (in
wallets' limit overrides), changes of a tenant's tier limits (in wallets' tier limits),
enforcing risk rule versions (``billfold.risk.changes``) and
reversals of automated risk responses (on the ledger and risk's tables:
``flows.risk_cases.RiskResponseReversalExecutor``, idempotent on the response's state).

Identity decides who may approve what, and may not import the ledger; these executors are
the bridge, installed by the application (``app.state.approval_executors``)::

    app.state.approval_executors = approval_executors(ledger, keyring, unit_of_work)

Both are idempotent on the approval id, as ``identity.operators.flows`` requires: the
adjustment's transfer id *is* the approval id, so a repeated execution finds the transfer
``exists`` and moves nothing; an unfreeze of an account already active changes nothing.
The transactional ones (key rotation, limit increase, tier limits change) write through the
decision's own session, so the approval and its effect commit together; a limit override's
key, and a tier limits change's, is the approval id, so executing it again adds nothing.

Every executor here also checks a request when it is made, and refuses one that could not
execute as it stands (``approval_executors`` registers the limit increase's, the tier
limits change's, the key rotation's and the risk response reversal's checks with
identity's ``ApprovalExecutors.checks``; the last locks the response and marks it
``reversing`` in the request's transaction).
"""

from __future__ import annotations

import uuid
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.flows.risk_cases import RiskResponseReversalCheck, RiskResponseReversalExecutor
from billfold.identity.operators.errors import InvalidApprovalPayload
from billfold.identity.operators.executors import (
    ApprovalExecutors,
    ApprovedAction,
    ExecutionOutcome,
    ExternalExecutor,
    OutcomeValue,
    TransactionalCheck,
    TransactionalExecutor,
    default_executors,
)
from billfold.identity.operators.payloads import (
    AccountUnfreezePayload,
    KeyRotationPayload,
    LedgerAdjustmentPayload,
    LimitIncreasePayload,
    TierLimitsChangePayload,
)
from billfold.identity.operators.permissions import ActionType
from billfold.identity.security_events import ActorType
from billfold.identity.types import Mode
from billfold.keys.errors import InvalidPurpose, UnknownKey
from billfold.keys.keyring import Keyring, check_purpose
from billfold.keys.service import KeyActor, rotate
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import AccountStatus, CreateTransferStatus, NewTransfer
from billfold.risk.changes import RuleChangeExecutor
from billfold.risk.scoring.promotions import ModelPromotionExecutor
from billfold.wallets.limits import TierFigures
from billfold.wallets.overrides import LimitIncrease, apply_limit_increase, check_limit_increase
from billfold.wallets.tier_limits import (
    TierLimitsChange,
    apply_tier_limits_change,
    check_tier_limits_change,
)

__all__ = [
    "AccountUnfreezeExecutor",
    "KeyRotationExecutor",
    "LedgerAdjustmentExecutor",
    "LimitIncreaseExecutor",
    "TierLimitsChangeExecutor",
    "approval_executors",
    "ledger_tenant_id",
]

_APPLIED = (CreateTransferStatus.OK, CreateTransferStatus.EXISTS)


def ledger_tenant_id(tenant_id: uuid.UUID, mode: Mode) -> uuid.UUID:
    """The ledger's tenant for a tenant's ``mode``: the same UUIDv5 as
    ``kit.auth.Principal.ledger_tenant_id`` (a test pins the two together)."""
    return uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:{Mode(mode).value}")


class LedgerAdjustmentExecutor:
    """A manual adjustment: one balanced transfer between two accounts of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def check(self, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str) -> None:
        invariant(action_type is ActionType.LEDGER_ADJUSTMENT, "executor for its own type")
        adjustment = LedgerAdjustmentPayload.model_validate_json(payload)
        debit_id, credit_id = adjustment.account_ids()
        accounts = await self._ledger.lookup_accounts(
            tenant_id=ledger_tenant_id(tenant_id, adjustment.mode), ids=[debit_id, credit_id]
        )
        if len(accounts) != 2:
            raise InvalidApprovalPayload(
                f"Both accounts must exist in the tenant's {adjustment.mode.value} ledger."
            )
        if any(account.ledger != adjustment.asset for account in accounts):
            raise InvalidApprovalPayload(f"Both accounts must hold {adjustment.asset}.")

    async def execute(self, action: ApprovedAction) -> ExecutionOutcome:
        adjustment = LedgerAdjustmentPayload.model_validate_json(action.payload)
        debit_id, credit_id = adjustment.account_ids()
        transfer = NewTransfer(
            id=action.approval_id,  # the idempotency key: executing twice moves money once
            tenant_id=ledger_tenant_id(action.tenant_id, adjustment.mode),
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=int(adjustment.amount),
            ledger=adjustment.asset,
            code=adjustment.code,
            user_data=format_id("apr", action.approval_id),
        )
        [result] = await self._ledger.create_transfers([transfer])
        if result.status not in _APPLIED:
            return ExecutionOutcome(succeeded=False, facts={"failure": result.status.value})
        return ExecutionOutcome(
            succeeded=True, facts={"transfer_id": format_id("txf", action.approval_id)}
        )


class AccountUnfreezeExecutor:
    """A frozen account set back to active (never a closed one)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def check(self, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str) -> None:
        invariant(action_type is ActionType.ACCOUNT_UNFREEZE, "executor for its own type")
        unfreeze = AccountUnfreezePayload.model_validate_json(payload)
        accounts = await self._ledger.lookup_accounts(
            tenant_id=ledger_tenant_id(tenant_id, unfreeze.mode),
            ids=[unfreeze.internal_account_id()],
        )
        if not accounts:
            raise InvalidApprovalPayload(
                f"The account must exist in the tenant's {unfreeze.mode.value} ledger."
            )
        if accounts[0].status is not AccountStatus.FROZEN:
            raise InvalidApprovalPayload(f"The account is {accounts[0].status.value}, not frozen.")

    async def execute(self, action: ApprovedAction) -> ExecutionOutcome:
        unfreeze = AccountUnfreezePayload.model_validate_json(action.payload)
        ledger_tenant = ledger_tenant_id(action.tenant_id, unfreeze.mode)
        account_id = unfreeze.internal_account_id()
        accounts = await self._ledger.lookup_accounts(tenant_id=ledger_tenant, ids=[account_id])
        if not accounts:
            return ExecutionOutcome(succeeded=False, facts={"failure": "account_not_found"})
        status = accounts[0].status
        if status is AccountStatus.CLOSED:
            return ExecutionOutcome(succeeded=False, facts={"failure": "account_closed"})
        if status is AccountStatus.FROZEN:
            await self._ledger.set_account_status(
                tenant_id=ledger_tenant, account_id=account_id, status=AccountStatus.ACTIVE
            )
        # Already active: a repeated execution (or someone else's unfreeze) got there first.
        return ExecutionOutcome(
            succeeded=True,
            facts={"account_status_before": status.value, "account_status": "active"},
        )


class KeyRotationExecutor:
    """Rotates the tenant's key-encryption key for the purpose the payload names (its
    ``key_id``: ``pii``, ``tokens``, ``blind_index``, ``signing``, ``totp`` or
    ``webhooks``) inside the decision's transaction, so the approval and the new key
    version commit together.

    Its :meth:`check` refuses a request naming no such key when it is made
    (``keys.errors.UnknownKey``, 422 ``unknown_key``), by the keys module's own
    ``check_purpose``; execution checks again, and reports ``failure: unknown_key``."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        invariant(action_type is ActionType.KEY_ROTATION, "executor for its own type")
        unknown = _unknown_key(KeyRotationPayload.model_validate_json(payload).key_id)
        if unknown is not None:
            raise unknown

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        purpose = KeyRotationPayload.model_validate_json(action.payload).key_id
        if _unknown_key(purpose) is not None:
            return ExecutionOutcome(succeeded=False, facts={"failure": UnknownKey.code})
        row = await rotate(
            session,
            keyring=self._keyring,
            tenant_id=action.tenant_id,
            purpose=purpose,
            actor=KeyActor(
                actor_type=ActorType.OPERATOR, actor_id=format_id("opr", action.decided_by)
            ),
            now_ns=action.decided_at,
        )
        return ExecutionOutcome(succeeded=True, facts={"purpose": purpose, "version": row.version})


def _unknown_key(key_id: str) -> UnknownKey | None:
    """The refusal for a ``key_id`` the key hierarchy does not know, as the keys module
    decides it (``check_purpose``), or None for one it does."""
    try:
        check_purpose(key_id)
    except InvalidPurpose as error:
        return UnknownKey(f"No key {key_id!r}: {error.detail}")
    return None


class LimitIncreaseExecutor:
    """Raises a holder's limit for one window and currency: a wallets limit override,
    written in the decision's transaction and keyed by the approval id. The payload's
    ``limit`` names the window (``per_transaction``, ``daily``, ``monthly``), ``asset`` the
    currency, ``amount`` the new limit in minor units; ``subject_id`` an end user of the
    tenant (``usr_…``, in either mode: the user's own mode is the override's).

    Its :meth:`check` refuses a request that cannot apply (an unknown window, currency or
    holder, a merchant, an amount out of range) when it is made, with the error
    ``wallets.overrides.check_limit_increase`` raises (``unknown_limit``,
    ``unsupported_currency``, ``amount_out_of_range``, ``holder_has_no_limits``,
    ``holder_not_found``). Execution checks again (the holder may be gone by then): one
    that cannot apply fails the approval with the same code as ``failure``, changing
    nothing."""

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        invariant(action_type is ActionType.LIMIT_INCREASE, "executor for its own type")
        increase = LimitIncreasePayload.model_validate_json(payload)
        await check_limit_increase(
            session,
            tenant_id=tenant_id,
            subject_id=increase.subject_id,
            window=increase.limit,
            currency=increase.asset,
            amount=int(increase.amount),
        )

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        invariant(action.action_type is ActionType.LIMIT_INCREASE, "executor for its own type")
        increase = LimitIncreasePayload.model_validate_json(action.payload)
        outcome = await apply_limit_increase(
            session,
            LimitIncrease(
                approval_id=action.approval_id,
                tenant_id=action.tenant_id,
                subject_id=increase.subject_id,
                window=increase.limit,
                currency=increase.asset,
                amount=int(increase.amount),
                requested_by=action.requested_by,
                approved_by=action.decided_by,
                approved_at=action.decided_at,
            ),
        )
        if not outcome.applied:
            return ExecutionOutcome(succeeded=False, facts={"failure": outcome.failure})
        assert outcome.mode is not None  # an applied override has its holder's mode
        return ExecutionOutcome(
            succeeded=True,
            facts={
                "subject_id": increase.subject_id,
                "mode": outcome.mode.value,
                "limit": increase.limit,
                "asset": increase.asset,
                "amount": increase.amount,
                "already_applied": outcome.already,
            },
        )


def _figures(change: TierLimitsChangePayload) -> TierFigures | None:
    """The payload's figures as integers (None: a removal)."""
    limits = change.limits
    if limits is None:
        return None
    return (int(limits.per_transaction), int(limits.daily), int(limits.monthly))


class TierLimitsChangeExecutor:
    """Sets (or removes) the tenant's own spending limits for one KYC tier in one currency
    and mode: a wallets tier-limits row, written in the decision's transaction and keyed
    by the approval id. The payload's ``mode``, ``tier`` and ``asset`` name what changes;
    ``limits`` (``per_transaction``, ``daily``, ``monthly``, minor units) the new figures,
    or null to remove the tenant's (the default table applies again).

    Its :meth:`check` refuses a request that cannot apply when it is made, with the error
    ``wallets.tier_limits.check_tier_limits_change`` raises (``unknown_tier``,
    ``unsupported_currency``, ``amount_out_of_range``, ``limits_out_of_order``,
    ``tier_limits_not_set``). Execution checks again (another removal may have come
    first): one that cannot apply fails the approval with the same code as ``failure``,
    changing nothing. Its result names what changed and the figures in force before, so
    the audit entry of the execution holds both."""

    async def check(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, action_type: ActionType, payload: str
    ) -> None:
        invariant(action_type is ActionType.TIER_LIMITS_CHANGE, "executor for its own type")
        change = TierLimitsChangePayload.model_validate_json(payload)
        await check_tier_limits_change(
            session,
            tenant_id=tenant_id,
            mode=change.mode,
            tier=change.tier,
            currency=change.asset,
            figures=_figures(change),
        )

    async def execute(self, session: AsyncSession, action: ApprovedAction) -> ExecutionOutcome:
        invariant(action.action_type is ActionType.TIER_LIMITS_CHANGE, "executor for its own type")
        change = TierLimitsChangePayload.model_validate_json(action.payload)
        figures = _figures(change)
        outcome = await apply_tier_limits_change(
            session,
            TierLimitsChange(
                approval_id=action.approval_id,
                tenant_id=action.tenant_id,
                mode=change.mode,
                tier=change.tier,
                currency=change.asset,
                figures=figures,
                requested_by=action.requested_by,
                approved_by=action.decided_by,
                approved_at=action.decided_at,
            ),
        )
        if not outcome.applied:
            return ExecutionOutcome(succeeded=False, facts={"failure": outcome.failure})
        per_transaction, daily, monthly = figures or (None, None, None)
        facts: dict[str, OutcomeValue] = {
            "mode": change.mode.value,
            "tier": change.tier,
            "asset": change.asset,
            "operation": "remove" if figures is None else "set",
            "per_transaction": None if per_transaction is None else str(per_transaction),
            "daily": None if daily is None else str(daily),
            "monthly": None if monthly is None else str(monthly),
            "already_applied": outcome.already,
        }
        if outcome.before is not None:
            before = outcome.before
            facts |= {
                "before_source": before.source,
                "before_per_transaction": str(before.figures[0]),
                "before_daily": str(before.figures[1]),
                "before_monthly": str(before.figures[2]),
            }
        return ExecutionOutcome(succeeded=True, facts=facts)


def approval_executors(
    ledger: Ledger, keyring: Keyring | None = None, unit_of_work: UnitOfWork | None = None
) -> ApprovalExecutors:
    """Every executor: the ledger's two over ``ledger``, the limit increase (wallets'
    overrides) and the tier limits change (wallets' tier limits), each with its
    request-time check, the risk rule change (``billfold.risk.changes``:
    an enforcing rule version made active, or disabled) with its check, the risk model
    promotion (``billfold.risk.scoring.promotions``), the key rotation over
    ``keyring``, with its request-time check, when given (without one, identity's default
    only records a rotation), and the reversal of an automated risk response
    (``flows.risk_cases.RiskResponseReversalExecutor``, with its check in the request's
    transaction, ``RiskResponseReversalCheck``) when ``unit_of_work`` is given."""
    external: dict[ActionType, ExternalExecutor] = {
        ActionType.LEDGER_ADJUSTMENT: LedgerAdjustmentExecutor(ledger),
        ActionType.ACCOUNT_UNFREEZE: AccountUnfreezeExecutor(ledger),
    }
    if unit_of_work is not None:
        external[ActionType.RISK_RESPONSE_REVERSAL] = RiskResponseReversalExecutor(
            ledger, unit_of_work
        )
    executors = default_executors().with_external(MappingProxyType(external))
    limit_increase = LimitIncreaseExecutor()
    tier_limits_change = TierLimitsChangeExecutor()
    rule_change = RuleChangeExecutor()
    transactional: dict[ActionType, TransactionalExecutor] = {
        **executors.transactional,
        ActionType.LIMIT_INCREASE: limit_increase,
        ActionType.TIER_LIMITS_CHANGE: tier_limits_change,
        ActionType.RISK_RULE_CHANGE: rule_change,
        ActionType.RISK_MODEL_PROMOTION: ModelPromotionExecutor(),
    }
    checks: dict[ActionType, TransactionalCheck] = {
        **executors.checks,
        ActionType.LIMIT_INCREASE: limit_increase,
        ActionType.TIER_LIMITS_CHANGE: tier_limits_change,
        ActionType.RISK_RULE_CHANGE: rule_change,
    }
    if unit_of_work is not None:  # checked where the request is stored, the response locked
        checks[ActionType.RISK_RESPONSE_REVERSAL] = RiskResponseReversalCheck()
    if keyring is not None:
        key_rotation = KeyRotationExecutor(keyring)
        transactional[ActionType.KEY_ROTATION] = key_rotation
        checks[ActionType.KEY_ROTATION] = key_rotation
    return ApprovalExecutors(
        transactional=MappingProxyType(transactional),
        external=executors.external,
        checks=MappingProxyType(checks),
    )
