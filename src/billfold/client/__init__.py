"""`billfold.client`: the Python SDK over httpx.

    from billfold.client import Billfold

    with Billfold(api_key="bf_test_…", base_url="http://127.0.0.1:8000") as billfold:
        wallet = billfold.accounts.create(ledger="USD", code=1,
                                          flags=["debits_must_not_exceed_credits"])
        billfold.transfers.create(id=new_transfer_id(), debit_account_id=…, …)

Every POST carries an `Idempotency-Key` (generated unless you pass one) that stays the same
across the SDK's retries, so a retried call can never apply twice. Errors arrive as typed
exceptions carrying the problem document's stable `code` (see `billfold.client.errors`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import httpx

from billfold.client._transport import RETRIES_MAX, TIMEOUT_S, Transport
from billfold.client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BillfoldClientError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from billfold.client.types import (
    Account,
    AccountPage,
    Balances,
    JSONObject,
    Transfer,
    TransferPage,
    TransferResult,
)

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "Billfold",
    "BillfoldClientError",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "new_account_id",
    "new_transfer_id",
]


def new_transfer_id() -> str:
    """A fresh transfer id: keep it and reuse it to retry the same transfer."""
    return f"txf_{uuid.uuid4().hex}"


def new_account_id() -> str:
    return f"acc_{uuid.uuid4().hex}"


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class _Resource:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport


class Accounts(_Resource):
    def create(
        self,
        *,
        ledger: str,
        code: int,
        id: str | None = None,
        flags: Sequence[str] = (),
        owner_ref: str | None = None,
        user_data: str | None = None,
    ) -> Account:
        body = _without_none(
            {
                "id": id,
                "ledger": ledger,
                "code": code,
                "flags": list(flags),
                "owner_ref": owner_ref,
                "user_data": user_data,
            }
        )
        return cast(Account, self._transport.request("POST", "/v1/accounts", json=body))

    def get(self, account_id: str) -> Account:
        return cast(Account, self._transport.request("GET", f"/v1/accounts/{account_id}"))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> AccountPage:
        params = _without_none({"limit": limit, "cursor": cursor})
        return cast(AccountPage, self._transport.request("GET", "/v1/accounts", params=params))

    def transfers(
        self,
        account_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        order: str | None = None,
    ) -> TransferPage:
        params = _without_none({"limit": limit, "cursor": cursor, "order": order})
        path = f"/v1/accounts/{account_id}/transfers"
        return cast(TransferPage, self._transport.request("GET", path, params=params))

    def balances(self, account_id: str, *, as_of: int | None = None) -> Balances:
        params = _without_none({"as_of": as_of})
        path = f"/v1/accounts/{account_id}/balances"
        return cast(Balances, self._transport.request("GET", path, params=params))


class Transfers(_Resource):
    def create(
        self,
        *,
        id: str,
        debit_account_id: str | None = None,
        credit_account_id: str | None = None,
        amount: int | None = None,
        ledger: str | None = None,
        code: int | None = None,
        flags: Sequence[str] = (),
        pending_id: str | None = None,
        timeout_s: int = 0,
        user_data: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Create one transfer. The transfer id is the ledger's own idempotency key; the
        `Idempotency-Key` header (by default the transfer id) makes the HTTP call replayable."""
        body = _without_none(
            {
                "id": id,
                "debit_account_id": debit_account_id,
                "credit_account_id": credit_account_id,
                "amount": None if amount is None else str(amount),
                "ledger": ledger,
                "code": code,
                "flags": list(flags),
                "pending_id": pending_id,
                "timeout_s": timeout_s,
                "user_data": user_data,
            }
        )
        answer = self._transport.request(
            "POST", "/v1/transfers", json=body, idempotency_key=idempotency_key or id
        )
        return cast(Transfer, answer)

    def create_batch(
        self, transfers: Sequence[JSONObject], *, idempotency_key: str | None = None
    ) -> list[TransferResult]:
        """Up to 8,190 transfers in one database transaction; one result per transfer."""
        answer = self._transport.request(
            "POST",
            "/v1/transfers/batch",
            json={"transfers": list(transfers)},
            idempotency_key=idempotency_key,
        )
        return cast(list[TransferResult], answer["results"])

    def get(self, transfer_id: str) -> Transfer:
        return cast(Transfer, self._transport.request("GET", f"/v1/transfers/{transfer_id}"))


class ApiKeys(_Resource):
    def create(
        self, *, name: str, scopes: Sequence[str], expires_at: str | None = None
    ) -> JSONObject:
        """A new key; the answer's `secret` is the only copy there will be."""
        body = _without_none({"name": name, "scopes": list(scopes), "expires_at": expires_at})
        return cast(JSONObject, self._transport.request("POST", "/v1/api-keys", json=body))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> JSONObject:
        params = _without_none({"limit": limit, "cursor": cursor})
        return cast(JSONObject, self._transport.request("GET", "/v1/api-keys", params=params))

    def revoke(self, api_key_id: str) -> JSONObject:
        path = f"/v1/api-keys/{api_key_id}/revoke"
        return cast(JSONObject, self._transport.request("POST", path))


class Users(_Resource):
    def create(self, *, identifier: str, password: str, **fields: Any) -> JSONObject:
        """Sign a wallet holder up (tenant backend, scope `users:admin`)."""
        body = {"identifier": identifier, "password": password, **fields}
        return cast(JSONObject, self._transport.request("POST", "/v1/users", json=body))

    def get(self, user_id: str) -> JSONObject:
        return cast(JSONObject, self._transport.request("GET", f"/v1/users/{user_id}"))

    def revoke_sessions(self, user_id: str) -> JSONObject:
        path = f"/v1/users/{user_id}/sessions/revoke"
        return cast(JSONObject, self._transport.request("POST", path))


class Billfold:
    """A client for one API key. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "http://127.0.0.1:8000",
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._transport = Transport(
            api_key=api_key,
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
        )
        self.accounts = Accounts(self._transport)
        self.transfers = Transfers(self._transport)
        self.api_keys = ApiKeys(self._transport)
        self.users = Users(self._transport)

    def request(self, method: str, path: str, *, json: Any = None) -> Any:
        """Any other endpoint, with the same retries, idempotency keys and typed errors."""
        return self._transport.request(method, path, json=json)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Billfold:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
