"""Time as a dependency, so tests can stop and move it."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]

NANOSECONDS_PER_SECOND = 1_000_000_000


class Clock(Protocol):
    """Wall-clock time in integer nanoseconds since the Unix epoch."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start_ns: int = 1_700_000_000 * NANOSECONDS_PER_SECOND) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, *, seconds: float = 0, nanoseconds: int = 0) -> None:
        self._now_ns += int(seconds * NANOSECONDS_PER_SECOND) + nanoseconds
