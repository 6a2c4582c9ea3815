"""Fraud labels (API key with `risk:write`): a simulated workload's ground truth."""

from __future__ import annotations

from typing import Literal, cast

from billfold.client.resources._base import Resource
from billfold.client.types import RiskLabel

__all__ = ["RiskLabels"]


class RiskLabels(Resource):
    def create(
        self,
        *,
        reference: str,
        fraud: bool,
        source: Literal["simulator"] = "simulator",
        idempotency_key: str | None = None,
    ) -> RiskLabel:
        """Label a movement (`pay_…`, or the decision `rdc_…` of one refused before it had
        an id) as fraud or not; labelling it again the same way changes nothing."""
        body = {"reference": reference, "fraud": fraud, "source": source}
        answer = self._transport.request(
            "POST", "/v1/risk/labels", json=body, idempotency_key=idempotency_key
        )
        return cast(RiskLabel, answer)
