"""Risk review: the queue of held movements (approve posts the hold, reject voids it,
notes, labels) and the automated responses (freeze, lower limits, hold outgoing), which a
second operator must approve to reverse. Operator session; the permission `cases.review`
(asking for a reversal: `risk.reverse.request`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    RiskCase,
    RiskCaseDetail,
    RiskCaseNote,
    RiskCasePage,
    RiskResponse,
    RiskResponsePage,
    RiskResponseReversal,
)

__all__ = ["CaseState", "ResponseKind", "ResponseState", "RiskCases", "RiskResponses"]

CaseState = Literal["open", "resolving", "approved", "rejected", "expired"]
ResponseKind = Literal["freeze_account", "lower_limits", "hold_outgoing"]
ResponseState = Literal["active", "reversing", "reversed"]


class RiskCases(Resource):
    def list(
        self,
        *,
        state: CaseState | None = None,
        kind: str | None = None,
        user_id: str | None = None,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RiskCasePage:
        """The queue, oldest opened first; `state` defaults to open."""
        params = without_none(
            {
                "state": state,
                "kind": kind,
                "user_id": user_id,
                "mode": mode,
                "limit": limit,
                "cursor": cursor,
            }
        )
        return cast(RiskCasePage, self._transport.request("GET", "/v1/risk/cases", params=params))

    def iterate(
        self,
        *,
        state: CaseState | None = None,
        kind: str | None = None,
        user_id: str | None = None,
        mode: Literal["test", "live"] | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[RiskCase]:
        return iterate(
            lambda cursor: self.list(
                state=state, kind=kind, user_id=user_id, mode=mode, limit=limit, cursor=cursor
            ),
            pages_max=pages_max,
        )

    def get(self, case_id: str) -> RiskCaseDetail:
        """The case with the decision's reasons, score and features, and its notes."""
        path = f"/v1/risk/cases/{path_id(case_id)}"
        return cast(RiskCaseDetail, self._transport.request("GET", path))

    def add_note(
        self, case_id: str, *, body: str, idempotency_key: str | None = None
    ) -> RiskCaseNote:
        path = f"/v1/risk/cases/{path_id(case_id)}/notes"
        answer = self._transport.request(
            "POST", path, json={"body": body}, idempotency_key=idempotency_key
        )
        return cast(RiskCaseNote, answer)

    def approve(
        self, case_id: str, *, note: str | None = None, idempotency_key: str | None = None
    ) -> RiskCaseDetail:
        """Post the held movement (labelled legitimate). `state` is `resolving` until the
        money moved (retried by the server); deciding a decided case: `ConflictError`
        `case_not_open`."""
        path = f"/v1/risk/cases/{path_id(case_id)}/approve"
        return self._decide(path, note=note, idempotency_key=idempotency_key)

    def reject(
        self, case_id: str, *, note: str | None = None, idempotency_key: str | None = None
    ) -> RiskCaseDetail:
        """Void the held movement (labelled fraud)."""
        path = f"/v1/risk/cases/{path_id(case_id)}/reject"
        return self._decide(path, note=note, idempotency_key=idempotency_key)

    def _decide(
        self, path: str, *, note: str | None, idempotency_key: str | None
    ) -> RiskCaseDetail:
        body = None if note is None else {"note": note}
        answer = self._transport.request("POST", path, json=body, idempotency_key=idempotency_key)
        return cast(RiskCaseDetail, answer)

    def label(
        self, case_id: str, *, fraud: bool, idempotency_key: str | None = None
    ) -> RiskCaseDetail:
        """Label the case's movement (the models learn from it); a new label replaces it."""
        path = f"/v1/risk/cases/{path_id(case_id)}/label"
        answer = self._transport.request(
            "POST", path, json={"fraud": fraud}, idempotency_key=idempotency_key
        )
        return cast(RiskCaseDetail, answer)


class RiskResponses(Resource):
    def apply(
        self,
        *,
        user_id: str,
        kind: ResponseKind,
        reason: str,
        limit_bps: int | None = None,
        idempotency_key: str | None = None,
    ) -> RiskResponse:
        """Apply a response to an end user by hand (`limit_bps`: for lower_limits, the share
        of each limit kept)."""
        body = without_none(
            {"user_id": user_id, "kind": kind, "reason": reason, "limit_bps": limit_bps}
        )
        answer = self._transport.request(
            "POST", "/v1/risk/responses", json=body, idempotency_key=idempotency_key
        )
        return cast(RiskResponse, answer)

    def list(
        self,
        *,
        user_id: str | None = None,
        state: ResponseState | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RiskResponsePage:
        """Newest first."""
        params = without_none(
            {"user_id": user_id, "state": state, "limit": limit, "cursor": cursor}
        )
        answer = self._transport.request("GET", "/v1/risk/responses", params=params)
        return cast(RiskResponsePage, answer)

    def iterate(
        self,
        *,
        user_id: str | None = None,
        state: ResponseState | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[RiskResponse]:
        return iterate(
            lambda cursor: self.list(user_id=user_id, state=state, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )

    def get(self, response_id: str) -> RiskResponse:
        path = f"/v1/risk/responses/{path_id(response_id)}"
        return cast(RiskResponse, self._transport.request("GET", path))

    def reverse(
        self, response_id: str, *, reason: str, idempotency_key: str | None = None
    ) -> RiskResponseReversal:
        """Ask for the reversal: the response is `reversing` until a different operator
        approves `approval_id` (`approvals.approve`); then it is undone exactly."""
        path = f"/v1/risk/responses/{path_id(response_id)}/reverse"
        answer = self._transport.request(
            "POST", path, json={"reason": reason}, idempotency_key=idempotency_key
        )
        return cast(RiskResponseReversal, answer)
