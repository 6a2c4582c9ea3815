"""Risk models, for an operator: versions and their metrics (`reports.read`), training and
promotion (`risk.models.manage`, risk analysts), drift alerts.

A version trains into ``shadow`` (scored and stored, never enforced); `promote` makes it
``active`` and retires the previous active version of its kind. An unknown version is a
`NotFoundError` ``risk_model_not_found``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    RiskModel,
    RiskModelAlert,
    RiskModelAlertPage,
    RiskModelPage,
    RiskModelTraining,
)

__all__ = ["RiskModels"]

Kind = Literal["supervised", "anomaly"]


class RiskModels(Resource):
    def list(
        self, *, mode: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> RiskModelPage:
        """The tenant's versions, newest first."""
        params = without_none({"mode": mode, "limit": limit, "cursor": cursor})
        return cast(RiskModelPage, self._transport.request("GET", "/v1/risk/models", params=params))

    def iterate(
        self, *, mode: str | None = None, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[RiskModel]:
        return iterate(
            lambda cursor: self.list(mode=mode, limit=limit, cursor=cursor), pages_max=pages_max
        )

    def get(self, model_id: str) -> RiskModel:
        path = f"/v1/risk/models/{path_id(model_id)}"
        return cast(RiskModel, self._transport.request("GET", path))

    def train(
        self, *, mode: str, kinds: Sequence[Kind] = ("supervised", "anomaly")
    ) -> RiskModelTraining:
        """Learn from what arrived since the latest versions; new versions are shadow."""
        body = {"mode": mode, "kinds": list(kinds)}
        answer = self._transport.request("POST", "/v1/risk/models/train", json=body)
        return cast(RiskModelTraining, answer)

    def promote(self, model_id: str) -> RiskModel:
        """Ask for the version to become active: a second operator approves the request
        named by `promotion_approval_id` (an active version is returned unchanged)."""
        path = f"/v1/risk/models/{path_id(model_id)}/promote"
        return cast(RiskModel, self._transport.request("POST", path))

    def list_alerts(
        self, *, mode: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> RiskModelAlertPage:
        """Drift alerts, newest first."""
        params = without_none({"mode": mode, "limit": limit, "cursor": cursor})
        answer = self._transport.request("GET", "/v1/risk/models/alerts", params=params)
        return cast(RiskModelAlertPage, answer)

    def iterate_alerts(
        self, *, mode: str | None = None, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[RiskModelAlert]:
        return iterate(
            lambda cursor: self.list_alerts(mode=mode, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )
