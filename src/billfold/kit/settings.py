"""One settings class for the whole process, read from `BILLFOLD_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every knob Billfold has. Each one is bounded: a limit on everything."""

    model_config = SettingsConfigDict(env_prefix="BILLFOLD_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///billfold.db",
        description="sqlite:///PATH (embedded default) or postgresql://USER@HOST/DB.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_connect_timeout_s: float = Field(default=10.0, gt=0, le=120)

    ledger_batch_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="How long the batching writer waits for more transfers before applying.",
    )
    ledger_batch_size_max: int = Field(
        default=8190,
        ge=1,
        le=8190,
        description="Most transfers applied in one database transaction.",
    )
    ledger_queue_size_max: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Most transfers waiting in the batching writer before callers are refused.",
    )
    ledger_expiry_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often pending-transfer timeouts are swept."
    )
    ledger_expiry_grace_s: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="`ledger verify` reports open pending transfers this long past their timeout.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
