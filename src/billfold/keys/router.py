"""Published signing keys (JWKS). The platform's are public on purpose: anyone verifying an
audit checkpoint or a signed document needs them without a Billfold credential, and a
public key reveals nothing. A tenant's own keys need one of its API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from billfold.identity.auth import get_unit_of_work, require_scopes
from billfold.identity.types import Principal
from billfold.keys.keyring import PLATFORM_TENANT_ID, Keyring
from billfold.keys.schemas import JsonWebKeySet
from billfold.keys.signing import jwks_of, published_signing_keys
from billfold.kit.db import UnitOfWork
from billfold.kit.errors import InvariantViolation

__all__ = ["PUBLIC_ROUTES", "get_keyring", "router"]

PUBLIC_ROUTES = frozenset({("GET", "/.well-known/jwks.json")})
"""The platform's public signing keys: public by nature."""

router = APIRouter(tags=["keys"])


def get_keyring(request: Request) -> Keyring:
    """The application's keyring, made by the lifespan in ``billfold.app``."""
    keyring = getattr(request.app.state, "keyring", None)
    if not isinstance(keyring, Keyring):
        raise InvariantViolation("the app lifespan sets up app.state.keyring")
    return keyring


Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Caller = Annotated[Principal, Depends(require_scopes())]


@router.get(
    "/.well-known/jwks.json",
    summary="The platform's Ed25519 signing keys (RFC 7517 / RFC 8037), active and verify-only.",
)
async def platform_jwks(unit_of_work: Work) -> JsonWebKeySet:
    async with unit_of_work.read() as session:
        rows = await published_signing_keys(session, tenant_id=PLATFORM_TENANT_ID)
    return JsonWebKeySet.model_validate(jwks_of(rows))


@router.get("/v1/jwks", summary="The caller's tenant's Ed25519 signing keys.")
async def tenant_jwks(principal: Caller, unit_of_work: Work) -> JsonWebKeySet:
    async with unit_of_work.read() as session:
        rows = await published_signing_keys(session, tenant_id=principal.tenant_id)
    return JsonWebKeySet.model_validate(jwks_of(rows))
