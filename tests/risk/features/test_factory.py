"""`feature_source_from_settings` picks the counter backend the settings ask for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from billfold.kit.settings import Settings
from billfold.risk.features.counters import DatabaseCounters, MemoryCounters, RedisCounters
from billfold.risk.features.service import feature_source_from_settings
from risk.features.features_support import REDIS_URL


def test_auto_is_the_database_without_redis_and_redis_with_it(tmp_path: Path) -> None:
    plain = feature_source_from_settings(Settings())
    assert isinstance(plain.counters, DatabaseCounters)
    with_redis = feature_source_from_settings(Settings(redis_url=REDIS_URL))  # type: ignore[arg-type]
    assert isinstance(with_redis.counters, RedisCounters)
    asyncio.run(with_redis.aclose())
    memory = feature_source_from_settings(
        Settings(risk_counters="memory", redis_url=REDIS_URL, risk_counters_memory_keys_max=7)  # type: ignore[arg-type]
    )
    assert isinstance(memory.counters, MemoryCounters)
    assert isinstance(
        feature_source_from_settings(
            Settings(risk_counters="database", redis_url=REDIS_URL)
        ).counters,
        DatabaseCounters,
    )  # type: ignore[arg-type]


def test_redis_counters_need_a_redis_url() -> None:
    with pytest.raises(ValidationError):
        Settings(risk_counters="redis")


def test_the_ip_country_table_is_loaded_from_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "ip.csv"
    path.write_text("203.0.113.0/24,AU\n")
    computer = feature_source_from_settings(Settings(risk_ip_countries=str(path)))
    assert computer._ip_countries is not None
    assert computer._ip_countries.country_of("203.0.113.9") == "AU"
