"""Alembic migrations for every domain's tables, and the function that applies them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy.ext.asyncio import AsyncEngine

from billfold.kit.errors import ServiceUnavailable

__all__ = [
    "SchemaBehind",
    "alembic_config",
    "current_revision",
    "missing_revisions",
    "require_migrated",
    "upgrade",
]


class SchemaBehind(ServiceUnavailable):
    """The database lacks migrations this code needs: `billfold db upgrade` first."""

    code = "schema_behind"
    title = "The database schema is behind this release"


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


def missing_revisions(current: str | None) -> list[str]:
    """The revisions `upgrade` would apply to a database at `current` (None: none yet),
    newest first. Empty at the head, and for a revision this code does not know: a database
    a newer release already upgraded, which this one (say, mid-way through a rolling
    deployment) leaves to it."""
    try:
        return [revision.revision for revision in _scripts().iterate_revisions("heads", current)]
    except RevisionError:
        return []


@cache
def _scripts() -> ScriptDirectory:
    """This package's migration scripts, read once a process: they do not change under it,
    and reading them (each a module to load) cost every application's startup 20 ms."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: not migrated at all)."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def require_migrated(engine: AsyncEngine) -> None:
    """Raise `SchemaBehind` unless the database has every migration of this code: started on
    an older schema, `serve` and `worker` would fail request by request with SQL errors."""
    current = await current_revision(engine)
    missing = missing_revisions(current)
    if missing:
        raise SchemaBehind(
            f"The database is at revision {current or 'none'} and lacks {len(missing)}"
            f" migration(s) up to {missing[0]}: run `billfold db upgrade` first."
        )
