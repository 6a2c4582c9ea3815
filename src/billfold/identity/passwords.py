"""Argon2id password hashing for everyone who signs in (end users and operators).

Hashing is deliberately slow, so it runs in a worker thread and the event loop keeps serving
other requests. Each stored hash carries the parameters it was made with: a hash made with
older parameters still verifies, and ``needs_rehash`` tells the sign-in to upgrade it.
Password policies differ by audience and live with each (``users.passwords``,
``operators.passwords``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "DEFAULT_PASSWORD_PARAMETERS",
    "PasswordParameters",
    "Passwords",
    "passwords_for",
]

_MEMORY_COST_KIB_MAX = 1024 * 1024
_TIME_COST_MAX = 20
_PARALLELISM_MAX = 16


@dataclass(frozen=True, slots=True)
class PasswordParameters:
    """Argon2id cost parameters; changing them makes every older hash due for a rehash."""

    time_cost: int
    memory_cost_kib: int
    parallelism: int
    hash_bytes: int = 32
    salt_bytes: int = 16

    def __post_init__(self) -> None:
        # Bounds, so a misconfiguration cannot make one sign-in take minutes or gigabytes.
        if not 1 <= self.time_cost <= _TIME_COST_MAX:
            raise ValueError(f"time_cost must be 1..{_TIME_COST_MAX}")
        if not 8 * self.parallelism <= self.memory_cost_kib <= _MEMORY_COST_KIB_MAX:
            raise ValueError(f"memory_cost_kib must be 8 * parallelism..{_MEMORY_COST_KIB_MAX}")
        if not 1 <= self.parallelism <= _PARALLELISM_MAX:
            raise ValueError(f"parallelism must be 1..{_PARALLELISM_MAX}")
        if not 16 <= self.hash_bytes <= 64 or not 16 <= self.salt_bytes <= 64:
            raise ValueError("hash_bytes and salt_bytes must be 16..64")


DEFAULT_PASSWORD_PARAMETERS = PasswordParameters(
    time_cost=profiles.RFC_9106_LOW_MEMORY.time_cost,
    memory_cost_kib=profiles.RFC_9106_LOW_MEMORY.memory_cost,
    parallelism=profiles.RFC_9106_LOW_MEMORY.parallelism,
)
"""RFC 9106 section 4's second recommendation (64 MiB, 3 passes), for ordinary servers."""


class Passwords:
    """Argon2id hashing with one set of parameters; verification accepts any parameters."""

    def __init__(self, parameters: PasswordParameters) -> None:
        self.parameters = parameters
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost_kib,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_bytes,
            salt_len=parameters.salt_bytes,
            type=Type.ID,
        )
        self._decoy_hash: str | None = None
        """Verified against when the account is unknown, so that path costs the same; made
        at first use (hashing is not free, and importing this module should be)."""

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; None (no such user) or a malformed hash matches
        nothing, after the same work as a real verification."""
        if password_hash is None and self._decoy_hash is None:
            self._decoy_hash = await self.hash(secrets.token_urlsafe(16))
        stored = self._decoy_hash if password_hash is None else password_hash
        assert stored is not None  # for mypy: the decoy exists once it is needed
        matches = await asyncio.to_thread(self._verify, stored, password)
        return matches and password_hash is not None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


@lru_cache(maxsize=8)
def passwords_for(parameters: PasswordParameters) -> Passwords:
    """One hasher per parameter set, shared, so each set makes its decoy hash once."""
    return Passwords(parameters)
