"""`AsyncBillfold`: the tenant backend's ledger calls for asyncio, over the same request
building, retry policy and typed errors as `Billfold` (`_transport._Call`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import httpx

from billfold.client._auth import ApiKeyCredential
from billfold.client._clients import DEFAULT_BASE_URL
from billfold.client._transport import RETRIES_MAX, TIMEOUT_S, AsyncTransport
from billfold.client.resources.ledger_async import AsyncAccounts, AsyncTransfers

__all__ = ["AsyncBillfold"]


class AsyncBillfold:
    """Ledger accounts and transfers with an API key, for asyncio. Use `async with`, or
    `await close()`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = AsyncTransport(
            credential=ApiKeyCredential(api_key),
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
            sleep=sleep,
            clock=clock,
        )
        self.accounts = AsyncAccounts(self._transport)
        self.transfers = AsyncTransfers(self._transport)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Any other endpoint the key may call, with the same retries, keys and errors."""
        return await self._transport.request(
            method.upper(), path, json=json, params=params, idempotency_key=idempotency_key
        )

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncBillfold:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
