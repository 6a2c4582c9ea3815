"""How a sandbox delivers its notifications: over HTTP in a background task, or recorded
for a test to deliver itself (deterministic: no sleeps racing the assertions)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog

__all__ = [
    "HttpNotificationSender",
    "NotificationSender",
    "OutgoingNotification",
    "RecordingSender",
]

log = structlog.get_logger(__name__)

ATTEMPTS_MAX = 5
IN_FLIGHT_MAX = 10_000


@dataclass(frozen=True, slots=True)
class OutgoingNotification:
    provider: str
    body: bytes
    headers: dict[str, str]


class NotificationSender(Protocol):
    def send(self, *, provider: str, body: bytes, headers: dict[str, str]) -> None:
        """Deliver later; never blocks the caller."""
        ...


class RecordingSender:
    """Keeps every notification; a test delivers them when and in the order it chooses."""

    def __init__(self) -> None:
        self.outbox: list[OutgoingNotification] = []

    def send(self, *, provider: str, body: bytes, headers: dict[str, str]) -> None:
        self.outbox.append(OutgoingNotification(provider, body, dict(headers)))

    def take(self) -> list[OutgoingNotification]:
        taken, self.outbox = self.outbox, []
        return taken


class HttpNotificationSender:
    """Posts each notification to `<base_url>/v1/connectors/<provider>/notifications` after
    `delay_s`, retrying a bounded number of times with doubling waits."""

    def __init__(self, base_url: str, *, delay_s: float, timeout_s: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._delay_s = delay_s
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, *, provider: str, body: bytes, headers: dict[str, str]) -> None:
        if len(self._tasks) >= IN_FLIGHT_MAX:
            log.warning("sandbox.notification_dropped", provider=provider)
            return
        task = asyncio.get_running_loop().create_task(self._deliver(provider, body, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, provider: str, body: bytes, headers: dict[str, str]) -> None:
        url = f"{self._base_url}/v1/connectors/{provider}/notifications"
        wait_s = max(self._delay_s, 0.1)
        await asyncio.sleep(self._delay_s)
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            for _ in range(ATTEMPTS_MAX):
                try:
                    response = await client.post(
                        url, content=body, headers={**headers, "Content-Type": "application/json"}
                    )
                    if response.status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(wait_s)
                wait_s *= 2
        log.warning("sandbox.notification_undelivered", provider=provider)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
