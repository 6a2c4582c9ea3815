"""End users, as the tenant's backend manages them (API key with `users:admin`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from billfold.client.pagination import PAGES_MAX, iterate
from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import SessionsRevoked, User, UserPage

__all__ = ["Users"]


class Users(Resource):
    def create(
        self,
        *,
        password: str,
        email: str | None = None,
        phone: str | None = None,
        handle: str | None = None,
        idempotency_key: str | None = None,
    ) -> User:
        """Sign a user up in the key's tenant and mode: at least one of `email`, `phone`
        (E.164, `+…`) and `handle`, each unique in the tenant."""
        if email is None and phone is None and handle is None:
            raise ValueError("give at least one of email, phone and handle")
        body = without_none({"email": email, "phone": phone, "handle": handle})
        body["password"] = password
        answer = self._transport.request(
            "POST", "/v1/users", json=body, idempotency_key=idempotency_key
        )
        return cast(User, answer)

    def list(
        self,
        *,
        identifier: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> UserPage:
        """The tenant's users of the key's mode, or the one with `identifier`."""
        params = without_none({"identifier": identifier, "limit": limit, "cursor": cursor})
        return cast(UserPage, self._transport.request("GET", "/v1/users", params=params))

    def iterate(
        self,
        *,
        identifier: str | None = None,
        limit: int | None = None,
        pages_max: int = PAGES_MAX,
    ) -> Iterator[User]:
        return iterate(
            lambda cursor: self.list(identifier=identifier, limit=limit, cursor=cursor),
            pages_max=pages_max,
        )

    def get(self, user_id: str) -> User:
        return cast(User, self._transport.request("GET", f"/v1/users/{path_id(user_id)}"))

    def revoke_sessions(self, user_id: str) -> SessionsRevoked:
        """End every session of the user (they must sign in again)."""
        path = f"/v1/users/{path_id(user_id)}/sessions/revoke"
        return cast(SessionsRevoked, self._transport.request("POST", path))
