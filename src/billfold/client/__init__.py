"""`billfold.client`: the typed Python SDK over httpx, one client per credential.

    from billfold.client import Billfold, new_transfer_id

    with Billfold(api_key="bf_test_…", base_url="http://127.0.0.1:8000") as billfold:
        wallet = billfold.accounts.create(ledger="USD", code=1,
                                          flags=["debits_must_not_exceed_credits"])
        billfold.transfers.create(id=new_transfer_id(), debit_account_id=…, …)

`BillfoldUser` signs an end user in (password, then TOTP, recovery code or passkey) and
refreshes the rotating tokens on its own; `BillfoldOperator` logs an operator in for the
back office and four-eyes approvals; `DeviceSigner` signs requests with a bound device key.
`AsyncBillfold` makes the ledger calls from asyncio, with the same policy.

Every POST, PUT, PATCH and DELETE carries an `Idempotency-Key` (generated unless you pass
one) that stays the same across the SDK's retries, so a retried call can never apply twice.
Errors arrive as typed exceptions carrying the problem document's stable `code` (see
`billfold.client.errors`).
The SDK imports nothing from the server: it needs only httpx (and cryptography to sign).
"""

from __future__ import annotations

from billfold.client._async_client import AsyncBillfold
from billfold.client._clients import DEFAULT_BASE_URL, Billfold, BillfoldOperator, BillfoldUser
from billfold.client._transport import RETRIES_MAX, TIMEOUT_S
from billfold.client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    BillfoldClientError,
    ConflictError,
    NotFoundError,
    NotSignedInError,
    PaginationLimitError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    RefreshTokenInvalidError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from billfold.client.pagination import iterate, iterate_async
from billfold.client.resources.ledger import (
    BATCH_SIZE_MAX,
    new_account_id,
    new_transfer_id,
    transfer_body,
)
from billfold.client.signing import DeviceSigner

__all__ = [
    "BATCH_SIZE_MAX",
    "DEFAULT_BASE_URL",
    "RETRIES_MAX",
    "TIMEOUT_S",
    "ApiError",
    "AsyncBillfold",
    "AuthenticationError",
    "BadRequestError",
    "Billfold",
    "BillfoldClientError",
    "BillfoldOperator",
    "BillfoldUser",
    "ConflictError",
    "DeviceSigner",
    "NotFoundError",
    "NotSignedInError",
    "PaginationLimitError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RefreshTokenInvalidError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
    "iterate",
    "iterate_async",
    "new_account_id",
    "new_transfer_id",
    "transfer_body",
]
