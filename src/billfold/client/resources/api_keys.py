"""The tenant's API keys (API key with `tenant:admin`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import ApiKey, ApiKeyCreated, ApiKeyPage

__all__ = ["ApiKeys"]


class ApiKeys(Resource):
    def create(
        self,
        *,
        name: str,
        scopes: Sequence[str],
        mode: Literal["test", "live"] | None = None,
        expires_at: str | None = None,
        idempotency_key: str | None = None,
    ) -> ApiKeyCreated:
        """A new key (by default in the calling key's mode; `expires_at` RFC 3339). The
        answer's `secret` is the only copy there will be."""
        body = without_none(
            {"name": name, "scopes": list(scopes), "mode": mode, "expires_at": expires_at}
        )
        answer = self._transport.request(
            "POST", "/v1/api-keys", json=body, idempotency_key=idempotency_key
        )
        return cast(ApiKeyCreated, answer)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> ApiKeyPage:
        params = without_none({"limit": limit, "cursor": cursor})
        return cast(ApiKeyPage, self._transport.request("GET", "/v1/api-keys", params=params))

    def iterate(self, *, limit: int | None = None, pages_max: int = PAGES_MAX) -> Iterator[ApiKey]:
        return iterate(lambda cursor: self.list(limit=limit, cursor=cursor), pages_max=pages_max)

    def get(self, api_key_id: str) -> ApiKey:
        path = f"/v1/api-keys/{path_id(api_key_id)}"
        return cast(ApiKey, self._transport.request("GET", path))

    def revoke(self, api_key_id: str) -> ApiKey:
        """Revoke a key at once; revoking it again changes nothing."""
        path = f"/v1/api-keys/{path_id(api_key_id)}/revoke"
        return cast(ApiKey, self._transport.request("POST", path))
