"""Hot-path statements run on the session's driver connection.

On SQLite every statement SQLAlchemy runs costs about 0.4 ms before the database does any
work: aiosqlite hops to its thread four times (cursor, execute, fetch, close) and the
execution context and result wrap each row. A `DriverStatement` is compiled once per
dialect to the driver's SQL and, on SQLite, runs in one hop (`execute_fetchall`,
`executemany`) on the very connection, and so in the very transaction, of the session.
Other dialects go through `session.execute` unchanged (asyncpg's round trip is one hop
already).

Only for statements whose parameters are plain values: bound parameters are converted
by their type's bind processor (a UUID to its hex on SQLite), result values are returned
as the driver gives them (no result processors), and an IN list must be written as OR-ed
equalities (an IN list is expanded at execution, which a precompiled statement cannot).
A missing parameter raises `KeyError` on every dialect. Driver errors reach the caller as
the driver raises them (`sqlite3.Error`), not wrapped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billfold.kit.errors import invariant

__all__ = ["DriverStatement"]

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    required: bool
    constant: Any
    processor: _Processor


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    slots: tuple[_Slot, ...]
    required: frozenset[str]

    def check(self, parameters: Mapping[str, Any]) -> None:
        missing = self.required.difference(parameters)
        if missing:
            raise KeyError(f"no value for the bound parameters {sorted(missing)}")

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = []
        for slot in self.slots:
            value = parameters[slot.name] if slot.required else slot.constant
            values.append(value if slot.processor is None else slot.processor(value))
        return values


class DriverStatement:
    """A SQLAlchemy Core statement with named bound parameters, run on the driver."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    async def fetch(
        self, session: AsyncSession, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The statement's rows, as tuples of driver values."""
        connection = await session.connection()
        compiled = self._compile(connection.dialect)
        compiled.check(parameters)
        if connection.dialect.name != "sqlite":
            return (await session.execute(self.statement, parameters)).all()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        return list(await driver.execute_fetchall(compiled.sql, compiled.arguments(parameters)))

    async def fetch_alone(
        self, connection: AsyncConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """PostgreSQL: the statement's rows, run alone on `connection`'s driver outside any
        transaction (one round trip; one statement sees one snapshot). For a read only."""
        invariant(connection.dialect.name == "postgresql", "run alone on PostgreSQL only")
        compiled = self._compile(connection.dialect)
        compiled.check(parameters)
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        return list(await driver.fetch(compiled.sql, *compiled.arguments(parameters)))

    async def execute_many(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row of parameters (a write: nothing is returned)."""
        if not rows:
            return
        connection = await session.connection()
        compiled = self._compile(connection.dialect)
        for row in rows:
            compiled.check(row)
        if connection.dialect.name != "sqlite":
            await session.execute(self.statement, list(rows))
            return
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.executemany(compiled.sql, [compiled.arguments(row) for row in rows])

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = _compile(self.statement, dialect)
            self._compiled[dialect.name] = compiled
        return compiled


def _compile(statement: Any, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    slots = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        constant = None if bind.required else bind.effective_value
        slots.append(_Slot(name, bind.required, constant, processor))
    required = frozenset(slot.name for slot in slots if slot.required)
    return _Compiled(sql=compiled.string, slots=tuple(slots), required=required)
