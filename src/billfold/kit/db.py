"""Database URLs, the SQLAlchemy engine and the unit of work, for SQLite and PostgreSQL.

`BILLFOLD_DATABASE_URL` takes one of two forms:
- `sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the embedded default);
- `postgresql://user[:password]@host[:port]/database` (`?host=/socket/dir` for a Unix socket).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from billfold.kit.errors import ValidationFailed

__all__ = [
    "DatabaseTarget",
    "InvalidDatabaseUrl",
    "UnitOfWork",
    "create_engine",
    "parse_database_url",
]


class InvalidDatabaseUrl(ValidationFailed):
    code = "invalid_database_url"
    title = "Unsupported database URL"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the data lives, in the forms each driver wants."""

    kind: Literal["sqlite", "postgresql"]
    url: str
    sqlite_path: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.sqlite_path}"
        return "postgresql+asyncpg://" + self.url.split("://", 1)[1]

    @property
    def asyncpg_dsn(self) -> str:
        return "postgresql://" + self.url.split("://", 1)[1]


def parse_database_url(url: str) -> DatabaseTarget:
    """Recognise a SQLite or PostgreSQL URL; anything else is refused with a clear message."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise InvalidDatabaseUrl("SQLite needs a file path: sqlite:///billfold.db")
        return DatabaseTarget(kind="sqlite", url=url, sqlite_path=path)
    for scheme in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(scheme):
            return DatabaseTarget(kind="postgresql", url="postgresql://" + url[len(scheme) :])
    raise InvalidDatabaseUrl("expected sqlite:///PATH or postgresql://USER@HOST/DATABASE")


def create_engine(target: DatabaseTarget, *, pool_size: int = 10) -> AsyncEngine:
    """The SQLAlchemy engine for domain repositories and migrations."""
    if target.kind == "sqlite":
        engine = create_async_engine(target.sqlalchemy_url, connect_args={"timeout": 30})
        _begin_immediately(engine)
        return engine
    return create_async_engine(target.sqlalchemy_url, pool_size=pool_size, pool_pre_ping=True)


READ_ONLY_OPTION = "billfold_read_only"
"""Execution option of `UnitOfWork.read` connections: SQLite begins them deferred."""


def _begin_immediately(engine: AsyncEngine) -> None:
    """SQLite transactions take the write lock when they begin (`BEGIN IMMEDIATE`).

    pysqlite's default deferred BEGIN reads first and upgrades to a write lock later; when
    another connection writes in between, the upgrade fails at once with "database is
    locked" instead of waiting out the busy timeout. Taking the lock up front makes
    concurrent writers queue, as the ledger's own connection does.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        reading = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


class UnitOfWork:
    """Owns a session: commits when the block succeeds, rolls back when it raises.

    Services and repositories receive the session and only flush; they never commit.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A transaction that only reads. On SQLite it begins deferred, so it takes no
        write lock (WAL readers never wait for the writer): polls that usually find
        nothing look here first and `begin` only when there is work."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session
