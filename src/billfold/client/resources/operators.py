"""Back-office operators (operator session; creating one also takes a live `tenant:admin`
API key)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import Operator, OperatorCreated, OperatorPage

__all__ = ["OperatorCreation", "Operators"]


class OperatorCreation(Resource):
    """What the API key client may do with operators: create them."""

    def create(
        self,
        *,
        email: str,
        display_name: str,
        roles: Sequence[str],
        idempotency_key: str | None = None,
    ) -> OperatorCreated:
        """A new operator; its `one_time_password`, shown once, must be changed at the
        first sign-in. Roles: admin, support, risk_analyst, compliance_officer, finance."""
        body = {"email": email, "display_name": display_name, "roles": list(roles)}
        answer = self._transport.request(
            "POST", "/v1/operators", json=body, idempotency_key=idempotency_key
        )
        return cast(OperatorCreated, answer)


class Operators(OperatorCreation):
    """Managing operators (the permission `operators.manage`)."""

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> OperatorPage:
        params = without_none({"limit": limit, "cursor": cursor})
        return cast(OperatorPage, self._transport.request("GET", "/v1/operators", params=params))

    def iterate(
        self, *, limit: int | None = None, pages_max: int = PAGES_MAX
    ) -> Iterator[Operator]:
        return iterate(lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max)

    def get(self, operator_id: str) -> Operator:
        path = f"/v1/operators/{path_id(operator_id)}"
        return cast(Operator, self._transport.request("GET", path))

    def set_roles(
        self, operator_id: str, *, roles: Sequence[str], idempotency_key: str | None = None
    ) -> Operator:
        """Replace another operator's roles (never one's own). PUT: safe to repeat."""
        path = f"/v1/operators/{path_id(operator_id)}/roles"
        body = {"roles": list(roles)}
        answer = self._transport.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return cast(Operator, answer)

    def disable(self, operator_id: str, *, reason: str | None = None) -> Operator:
        """Disable another operator: its sessions end at once. `reason` is recorded with
        the security event."""
        return self._set_status(f"/v1/operators/{path_id(operator_id)}/disable", reason)

    def enable(self, operator_id: str, *, reason: str | None = None) -> Operator:
        return self._set_status(f"/v1/operators/{path_id(operator_id)}/enable", reason)

    def _set_status(self, path: str, reason: str | None) -> Operator:
        body = None if reason is None else {"reason": reason}
        return cast(Operator, self._transport.request("POST", path, json=body))
