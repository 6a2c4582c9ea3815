"""Who is acting: an authenticated operator, or any actor as the security log records it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from billfold.identity.operators.permissions import Permission, Role
from billfold.identity.security_events import ActorType
from billfold.kit.ids import format_id

__all__ = ["OPERATOR_ID_PREFIX", "Actor", "OperatorPrincipal"]

OPERATOR_ID_PREFIX = "opr"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, as the security event log names it."""

    actor_type: ActorType
    actor_id: str | None

    @classmethod
    def system(cls) -> Actor:
        """The platform operator at the command line."""
        return cls(actor_type=ActorType.SYSTEM, actor_id=None)


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    """A signed-in operator, with the roles and permissions it has at this request."""

    tenant_id: uuid.UUID
    operator_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[Role]
    permissions: frozenset[Permission]
    password_change_required: bool

    @property
    def actor(self) -> Actor:
        return Actor(
            actor_type=ActorType.OPERATOR, actor_id=format_id(OPERATOR_ID_PREFIX, self.operator_id)
        )
