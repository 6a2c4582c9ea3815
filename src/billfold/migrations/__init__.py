"""Alembic migrations for every domain's tables, and the function that applies them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade"]


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration pointing at this package's scripts."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` up to `revision` (blocking; run it in a thread
    from async code)."""
    command.upgrade(alembic_config(database_url), revision)
