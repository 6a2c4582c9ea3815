"""Operators' passwords: the policy, one-time passwords and Argon2id hashing.

Hashing is deliberately slow (RFC 9106's low-memory profile: 64 MiB, 3 passes, about a
tenth of a second), so it runs in a worker thread: the event loop keeps serving other
requests meanwhile. Each stored hash carries its own parameters, so a hash made with other
parameters still verifies, and is upgraded at the next successful sign-in.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from billfold.identity.operators.errors import InvalidPassword

__all__ = [
    "DEFAULT_PASSWORDS",
    "ONE_TIME_PASSWORD_BYTES",
    "PASSWORD_LENGTH_MAX",
    "PASSWORD_LENGTH_MIN",
    "Passwords",
    "check_password_policy",
    "new_one_time_password",
]

PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256
"""Bounds the work one sign-in attempt can cost, and the request that carries it."""
ONE_TIME_PASSWORD_BYTES = 18
"""144 random bits, 24 characters: typed once, then changed."""


def check_password_policy(password: str, *, email: str) -> None:
    """Refuse a password that is too short, too long, blank or the email itself.

    NIST SP 800-63B: length matters, composition rules do not, so there are none.
    """
    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        raise InvalidPassword(
            f"A password has {PASSWORD_LENGTH_MIN} to {PASSWORD_LENGTH_MAX} characters.",
            length_min=PASSWORD_LENGTH_MIN,
            length_max=PASSWORD_LENGTH_MAX,
        )
    if not password.strip() or password.strip().casefold() == email.casefold():
        raise InvalidPassword("A password cannot be blank or the email address.")


def new_one_time_password() -> str:
    """A random password for a new operator, shown once and to be changed at first use."""
    return secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)


class Passwords:
    """Argon2id hashing with fixed parameters; verification accepts any parameters."""

    def __init__(
        self, *, time_cost: int, memory_cost_kib: int, parallelism: int, salt_bytes: int = 16
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=salt_bytes,
            type=Type.ID,
        )
        self._decoy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches; a malformed stored hash matches nothing."""
        return await asyncio.to_thread(self._verify, password_hash, password)

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

    async def verify_nothing(self, password: str) -> None:
        """Spend what a verification costs, for an unknown email: the response time then
        does not tell which addresses exist."""
        if self._decoy_hash is None:
            self._decoy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._decoy_hash, password)


_LOW_MEMORY = profiles.RFC_9106_LOW_MEMORY
DEFAULT_PASSWORDS = Passwords(
    time_cost=_LOW_MEMORY.time_cost,
    memory_cost_kib=_LOW_MEMORY.memory_cost,
    parallelism=_LOW_MEMORY.parallelism,
)
"""RFC 9106 section 4's second recommended option, for memory-constrained servers."""
