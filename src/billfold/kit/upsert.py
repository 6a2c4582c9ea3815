"""`INSERT … ON CONFLICT DO NOTHING` on either backend, for rows whose key is deterministic."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

__all__ = ["insert_if_absent"]


async def insert_if_absent(
    session: AsyncSession, model: type[DeclarativeBase], values: dict[str, Any]
) -> bool:
    """Insert one row unless a row with the same key (or unique value) exists; whether it
    was inserted. Concurrent callers never fail: the database settles who was first."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(model).values(**values).on_conflict_do_nothing()
    result: Any = await session.execute(statement)
    return int(result.rowcount or 0) == 1
