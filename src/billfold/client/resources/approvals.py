"""Four-eyes approvals: one operator asks, a different one approves or refuses.

Payloads by action type (amounts in minor units; sent as digit strings):

- `ledger_adjustment`: `mode`, `debit_account_id`, `credit_account_id`, `amount`, `asset`,
  `code` (default 9000);
- `account_unfreeze`: `mode`, `account_id`;
- `limit_increase`: `subject_id`, `limit`, `asset`, `amount`;
- `key_rotation`: `key_id`;
- `risk_response_reversal`: `response_id` (better asked with
  `BillfoldOperator.risk_responses.reverse`, which also marks the response `reversing`);
- `tier_limits_change`: `mode`, `tier`, `asset`, `limits` (`per_transaction`, `daily`,
  `monthly`: the tenant's figures for every holder of the tier, or null to remove them);
  see `request_tier_limits_change` and `request_tier_limits_removal`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import Approval, ApprovalPage

__all__ = ["ActionType", "ApprovalStatus", "Approvals"]

ActionType = Literal[
    "ledger_adjustment",
    "account_unfreeze",
    "limit_increase",
    "key_rotation",
    "risk_response_reversal",
    "tier_limits_change",
]
ApprovalStatus = Literal["pending", "approved", "refused", "expired", "executed", "failed"]


class Approvals(Resource):
    def create(
        self,
        *,
        action_type: ActionType,
        payload: Mapping[str, Any],
        reason: str,
        expires_in_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Ask for a sensitive action; it waits (a day by default) for another operator."""
        body = without_none(
            {
                "action_type": action_type,
                "payload": dict(payload),
                "reason": reason,
                "expires_in_s": expires_in_s,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/approvals", json=body, idempotency_key=idempotency_key
        )
        return cast(Approval, answer)

    def request_ledger_adjustment(
        self,
        *,
        mode: Literal["test", "live"],
        debit_account_id: str,
        credit_account_id: str,
        amount: int,
        asset: str,
        reason: str,
        code: int | None = None,
        expires_in_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """A manual, balanced transfer, executed once a second operator approves it."""
        payload = without_none(
            {
                "mode": mode,
                "debit_account_id": debit_account_id,
                "credit_account_id": credit_account_id,
                "amount": str(amount),
                "asset": asset,
                "code": code,
            }
        )
        return self.create(
            action_type="ledger_adjustment",
            payload=payload,
            reason=reason,
            expires_in_s=expires_in_s,
            idempotency_key=idempotency_key,
        )

    def request_tier_limits_change(
        self,
        *,
        mode: Literal["test", "live"],
        tier: int,
        asset: str,
        per_transaction: int,
        daily: int,
        monthly: int,
        reason: str,
        expires_in_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Set the tenant's own limits for KYC tier `tier` in `asset` (minor units, for
        every holder of the tier in `mode`), once a second operator approves it
        (`limits.tiers.request`; approving takes `limits.tiers.approve`)."""
        figures = {"per_transaction": per_transaction, "daily": daily, "monthly": monthly}
        payload = {
            "mode": mode,
            "tier": tier,
            "asset": asset,
            "limits": {window: str(amount) for window, amount in figures.items()},
        }
        return self.create(
            action_type="tier_limits_change",
            payload=payload,
            reason=reason,
            expires_in_s=expires_in_s,
            idempotency_key=idempotency_key,
        )

    def request_tier_limits_removal(
        self,
        *,
        mode: Literal["test", "live"],
        tier: int,
        asset: str,
        reason: str,
        expires_in_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Remove the tenant's own limits for tier `tier` in `asset` (the default table
        applies again), once a second operator approves it."""
        payload = {"mode": mode, "tier": tier, "asset": asset, "limits": None}
        return self.create(
            action_type="tier_limits_change",
            payload=payload,
            reason=reason,
            expires_in_s=expires_in_s,
            idempotency_key=idempotency_key,
        )

    def list(
        self,
        *,
        status: ApprovalStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ApprovalPage:
        """The requests the caller may ask for or decide, newest first."""
        params = without_none({"status": status, "limit": limit, "cursor": cursor})
        return cast(ApprovalPage, self._transport.request("GET", "/v1/approvals", params=params))

    def iterate(
        self,
        *,
        status: ApprovalStatus | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[Approval]:
        return iterate(
            lambda cursor: self.list(status=status, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )

    def get(self, approval_id: str) -> Approval:
        path = f"/v1/approvals/{path_id(approval_id)}"
        return cast(Approval, self._transport.request("GET", path))

    def approve(
        self, approval_id: str, *, note: str | None = None, idempotency_key: str | None = None
    ) -> Approval:
        """Approve someone else's request: it executes at once (`status`, `result`)."""
        path = f"/v1/approvals/{path_id(approval_id)}/approve"
        body = None if note is None else {"note": note}
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(Approval, answer)

    def refuse(
        self, approval_id: str, *, note: str, idempotency_key: str | None = None
    ) -> Approval:
        """Refuse someone else's request (a note is required); nothing executes."""
        path = f"/v1/approvals/{path_id(approval_id)}/refuse"
        answer = self._transport.request(
            "POST", path, json={"note": note}, idempotency_key=idempotency_key
        )
        return cast(Approval, answer)
