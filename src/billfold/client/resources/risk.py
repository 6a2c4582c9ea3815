"""Real-time risk: the CEL rules operators write, and the decisions the engine made.

`RiskRules` is for an operator holding `risk.rules.manage` (risk analyst) to write and
`risk.rules.manage` or `risk.rules.approve` (compliance officer) to read. A shadow version
is active at once; an enforcing one waits (`state` `pending_approval`, `approval_id`) until
a different operator approves it with `approvals.approve(approval_id)`.

`RiskDecisions` reads decisions: with an API key holding `risk:read` (the key's mode), or
as an operator (risk analyst, compliance officer; `mode`, live by default).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    RiskDecision,
    RiskDecisionPage,
    RiskDecisionSummary,
    RiskRule,
    RiskRuleDetail,
    RiskRuleEvaluation,
    RiskRulePage,
)

__all__ = ["RiskDecisions", "RiskRules"]

Action = Literal["allow", "challenge", "review", "block"]
Enforcement = Literal["shadow", "enforcing"]
FeatureValue = bool | int | float | str | None


def _version_body(
    *,
    expression: str,
    action: Action,
    score: int,
    reason: str,
    enforcement: Enforcement,
    responses: Sequence[str],
) -> dict[str, object]:
    return {
        "expression": expression,
        "action": action,
        "score": score,
        "reason": reason,
        "enforcement": enforcement,
        "responses": list(responses),
    }


class RiskRules(Resource):
    def create(
        self,
        *,
        name: str,
        mode: Literal["test", "live"],
        expression: str,
        action: Action,
        score: int,
        reason: str,
        enforcement: Enforcement,
        responses: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> RiskRuleDetail:
        """A new rule and its version 1 (`expression` in CEL over the features)."""
        body = {
            "name": name,
            "mode": mode,
            **_version_body(
                expression=expression,
                action=action,
                score=score,
                reason=reason,
                enforcement=enforcement,
                responses=responses,
            ),
        }
        answer = self._transport.request(
            "POST", "/v1/risk/rules", json=body, idempotency_key=idempotency_key
        )
        return cast(RiskRuleDetail, answer)

    def add_version(
        self,
        rule_id: str,
        *,
        expression: str,
        action: Action,
        score: int,
        reason: str,
        enforcement: Enforcement,
        responses: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> RiskRuleDetail:
        body = _version_body(
            expression=expression,
            action=action,
            score=score,
            reason=reason,
            enforcement=enforcement,
            responses=responses,
        )
        path = f"/v1/risk/rules/{path_id(rule_id)}/versions"
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(RiskRuleDetail, answer)

    def disable(self, rule_id: str) -> RiskRuleDetail:
        """Stop evaluating the rule: at once when its active version is shadow; when it
        enforces, a second operator's approval is asked for (`disable_approval_id`) and the
        rule enforces until that approval executes."""
        path = f"/v1/risk/rules/{path_id(rule_id)}/disable"
        return cast(RiskRuleDetail, self._transport.request("POST", path))

    def get(self, rule_id: str) -> RiskRuleDetail:
        path = f"/v1/risk/rules/{path_id(rule_id)}"
        return cast(RiskRuleDetail, self._transport.request("GET", path))

    def list(
        self,
        *,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RiskRulePage:
        params = without_none({"mode": mode, "limit": limit, "cursor": cursor})
        return cast(RiskRulePage, self._transport.request("GET", "/v1/risk/rules", params=params))

    def iterate(
        self,
        *,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[RiskRule]:
        return iterate(
            lambda cursor: self.list(mode=mode, limit=limit, cursor=cursor), pages_max=pages_max
        )

    def evaluate(
        self, *, expression: str, features: Mapping[str, FeatureValue]
    ) -> RiskRuleEvaluation:
        """Dry run: whether `expression` holds on `features` (absent ones are null)."""
        body = {"expression": expression, "features": dict(features)}
        answer = self._transport.request("POST", "/v1/risk/rules/evaluate", json=body)
        return cast(RiskRuleEvaluation, answer)


class RiskDecisions(Resource):
    def list(
        self,
        *,
        user_id: str | None = None,
        action: Action | None = None,
        kind: str | None = None,
        since: str | None = None,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RiskDecisionPage:
        """Newest first; `since` an ISO 8601 time; `mode` for operators only."""
        params = without_none(
            {
                "user_id": user_id,
                "action": action,
                "kind": kind,
                "since": since,
                "mode": mode,
                "limit": limit,
                "cursor": cursor,
            }
        )
        answer = self._transport.request("GET", "/v1/risk/decisions", params=params)
        return cast(RiskDecisionPage, answer)

    def iterate(
        self,
        *,
        user_id: str | None = None,
        action: Action | None = None,
        kind: str | None = None,
        since: str | None = None,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[RiskDecisionSummary]:
        return iterate(
            lambda cursor: self.list(
                user_id=user_id,
                action=action,
                kind=kind,
                since=since,
                mode=mode,
                limit=limit,
                cursor=cursor,
            ),
            pages_max=pages_max,
        )

    def get(self, decision_id: str, *, mode: Literal["test", "live"] | None = None) -> RiskDecision:
        """A decision explained: features, rule hits (shadow too), reasons, scores."""
        path = f"/v1/risk/decisions/{path_id(decision_id)}"
        params = without_none({"mode": mode})
        return cast(RiskDecision, self._transport.request("GET", path, params=params))
