"""Risk: end users' risk profiles (API key: `users:admin`)."""

from __future__ import annotations

from typing import cast

from billfold.client.resources._base import Resource, path_id
from billfold.client.types import RiskProfile

__all__ = ["Risk"]


class Risk(Resource):
    def set_profile(
        self, user_id: str, *, residence_country: str | None, idempotency_key: str | None = None
    ) -> RiskProfile:
        """Set the user's (`usr_…`) country of residence (ISO 3166-1 alpha-2, upper case;
        None when unknown), compared by the risk engine with the country of the IP.
        PUT: safe to repeat. Another tenant's user is a `NotFoundError` `user_not_found`."""
        path = f"/v1/risk/profiles/{path_id(user_id)}"
        body = {"residence_country": residence_country}
        answer = self._transport.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return cast(RiskProfile, answer)

    def get_profile(self, user_id: str) -> RiskProfile:
        """The user's risk profile (`residence_country` and `updated_at` are None if it
        was never set)."""
        path = f"/v1/risk/profiles/{path_id(user_id)}"
        return cast(RiskProfile, self._transport.request("GET", path))
