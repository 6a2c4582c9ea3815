"""Fee schedules and fee previews (API key: `fees:write` to create and replace schedules,
`fees:read` to read them and to preview fees)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import FeeQuote, FeeSchedule, FeeSchedulePage

__all__ = ["FeeQuotes", "FeeSchedules"]


class FeeSchedules(Resource):
    """A tenant has one default schedule and at most one per merchant (`mer_…`). A rule
    is `{"name", "method"?, "currency"?, "regions"?, "tiers": [{"volume_from_minor",
    "bps", "fixed_minor", "min_minor"?, "max_minor"?}, …]}`; of the matching rules the
    most specific applies (method, then currency, then regions)."""

    def create(
        self,
        *,
        name: str,
        rules: Sequence[Mapping[str, Any]],
        merchant_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> FeeSchedule:
        """The default schedule, or a merchant's. A second one for the same merchant (or
        a second default) is a `ConflictError` `fee_schedule_exists`."""
        body = without_none({"merchant_id": merchant_id, "name": name, "rules": list(rules)})
        answer = self._transport.request(
            "POST", "/v1/fee-schedules", json=body, idempotency_key=idempotency_key
        )
        return cast(FeeSchedule, answer)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> FeeSchedulePage:
        params = without_none({"limit": limit, "cursor": cursor})
        answer = self._transport.request("GET", "/v1/fee-schedules", params=params)
        return cast(FeeSchedulePage, answer)

    def iterate(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[FeeSchedule]:
        return iterate(lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max)

    def get(self, schedule_id: str) -> FeeSchedule:
        path = f"/v1/fee-schedules/{path_id(schedule_id)}"
        return cast(FeeSchedule, self._transport.request("GET", path))

    def replace(
        self,
        schedule_id: str,
        *,
        name: str,
        rules: Sequence[Mapping[str, Any]],
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> FeeSchedule:
        """New rules, as the next version. With `version`, only if that is still the
        current one (else `ConflictError` `fee_schedule_version_mismatch`). PUT: safe to
        repeat."""
        body = without_none({"name": name, "rules": list(rules), "version": version})
        path = f"/v1/fee-schedules/{path_id(schedule_id)}"
        answer = self._transport.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return cast(FeeSchedule, answer)


class FeeQuotes(Resource):
    def create(
        self,
        *,
        method: str,
        currency: str,
        amount: int | str,
        region: str | None = None,
        monthly_volume: int | str | None = None,
        merchant_id: str | None = None,
    ) -> FeeQuote:
        """The fees a movement of `amount` (minor units) would pay, line by line; changes
        nothing."""
        body = without_none(
            {
                "merchant_id": merchant_id,
                "method": method,
                "currency": currency,
                "amount": str(amount),
                "region": region,
                "monthly_volume": None if monthly_volume is None else str(monthly_volume),
            }
        )
        return cast(FeeQuote, self._transport.request("POST", "/v1/fee-quotes", json=body))
