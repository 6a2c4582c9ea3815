"""The vocabulary of end users: the authenticated user and the public id prefixes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from billfold.identity.types import Mode

__all__ = [
    "DEVICE_ID_PREFIX",
    "PASSKEY_ID_PREFIX",
    "SESSION_ID_PREFIX",
    "STEP_UP_ID_PREFIX",
    "USER_ID_PREFIX",
    "UserPrincipal",
]

USER_ID_PREFIX = "usr"
SESSION_ID_PREFIX = "ses"
DEVICE_ID_PREFIX = "dev"
PASSKEY_ID_PREFIX = "pkey"
STEP_UP_ID_PREFIX = "stp"


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    """An end user proven by an access token: who, in which tenant and mode, and which
    session (token family) the token belongs to."""

    tenant_id: uuid.UUID
    mode: Mode
    user_id: uuid.UUID
    session_id: uuid.UUID
