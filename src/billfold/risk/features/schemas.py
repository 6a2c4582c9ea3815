"""Risk profiles over HTTP."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["COUNTRY_PATTERN", "RiskProfileRequest", "RiskProfileResponse"]

COUNTRY_PATTERN = r"^[A-Z]{2}$"


class RiskProfileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    residence_country: str | None = Field(default=None, pattern=COUNTRY_PATTERN)
    """ISO 3166-1 alpha-2 (upper case); null when unknown."""


class RiskProfileResponse(BaseModel):
    user_id: str
    """`usr_…`."""
    residence_country: str | None
    updated_at: datetime | None
    """When the profile was last set; null when it never was."""
