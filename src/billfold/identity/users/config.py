"""What an application chooses about end users: the WebAuthn relying party, the password
hashing cost and the clock. Everything else is a fixed limit in the module that uses it.

The application may put a :class:`UsersConfig` on ``app.state.users_config``; without one,
:data:`DEFAULT_USERS_CONFIG` applies (relying party ``localhost``, for development).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from billfold.identity.passwords import DEFAULT_PASSWORD_PARAMETERS, PasswordParameters
from billfold.identity.users.passkeys import RelyingParty
from billfold.kit.clock import Clock, SystemClock
from billfold.kit.errors import InvariantViolation

__all__ = [
    "DEFAULT_USERS_CONFIG",
    "DEVELOPMENT_RELYING_PARTY",
    "UsersConfig",
    "get_users_config",
]


DEVELOPMENT_RELYING_PARTY = RelyingParty(
    id="localhost", name="Billfold", origins=("http://localhost:8000",)
)
"""Passkeys made against it work only on localhost: a deployment configures its own."""


@dataclass(frozen=True, slots=True)
class UsersConfig:
    relying_party: RelyingParty = DEVELOPMENT_RELYING_PARTY
    """Passkeys are bound to this domain and accepted only from these origins."""
    password_parameters: PasswordParameters = DEFAULT_PASSWORD_PARAMETERS
    """Argon2id costs for new hashes; older hashes are upgraded at sign-in."""
    totp_issuer: str = "Billfold"
    """The name an authenticator app shows next to the code."""
    clock: Clock = field(default_factory=SystemClock)
    """Where `now` comes from; tests stop and move it."""


DEFAULT_USERS_CONFIG = UsersConfig()


def get_users_config(request: Request) -> UsersConfig:
    """The application's end-user configuration (the default unless one is installed)."""
    config = getattr(request.app.state, "users_config", None)
    if config is None:
        return DEFAULT_USERS_CONFIG
    if not isinstance(config, UsersConfig):
        raise InvariantViolation("app.state.users_config must be a UsersConfig")
    return config
