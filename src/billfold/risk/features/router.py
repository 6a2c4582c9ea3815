"""Risk profiles over HTTP (API key with `users:admin`)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from billfold.identity.auth import get_unit_of_work
from billfold.identity.schemas import datetime_from_ns
from billfold.kit.auth import Principal, require_scopes
from billfold.kit.ids import format_id, parse_id
from billfold.risk.features.models import RiskProfile
from billfold.risk.features.profiles import read_profile, write_profile
from billfold.risk.features.schemas import RiskProfileRequest, RiskProfileResponse

__all__ = ["router"]

router = APIRouter(prefix="/v1/risk", tags=["risk"])
UsersAdmin = Annotated[Principal, Depends(require_scopes("users:admin"))]


def _response(user_id: str, profile: RiskProfile | None) -> RiskProfileResponse:
    return RiskProfileResponse(
        user_id=user_id,
        residence_country=None if profile is None else profile.residence_country,
        updated_at=None if profile is None else datetime_from_ns(profile.updated_at),
    )


@router.put("/profiles/{user_id}", summary="Set an end user's risk profile (residence).")
async def set_risk_profile(
    request: Request, user_id: str, body: RiskProfileRequest, caller: UsersAdmin
) -> RiskProfileResponse:
    owner = parse_id("usr", user_id)
    async with get_unit_of_work(request).begin() as session:
        profile = await write_profile(
            session,
            tenant_id=caller.tenant_id,
            mode=caller.mode,
            user_id=owner,
            residence_country=body.residence_country,
            actor_id=format_id("key", caller.api_key_id),
            now_ns=time.time_ns(),
        )
    return _response(user_id, profile)


@router.get("/profiles/{user_id}", summary="An end user's risk profile.")
async def get_risk_profile(
    request: Request, user_id: str, caller: UsersAdmin
) -> RiskProfileResponse:
    owner = parse_id("usr", user_id)
    async with get_unit_of_work(request).read() as session:
        profile = await read_profile(
            session, tenant_id=caller.tenant_id, mode=caller.mode, user_id=owner
        )
    return _response(user_id, profile)
