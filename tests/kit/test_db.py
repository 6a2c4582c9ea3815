"""Database URLs: SQLite and PostgreSQL are recognised, anything else refused clearly."""

from __future__ import annotations

import pytest

from billfold.kit.db import InvalidDatabaseUrl, parse_database_url


def test_sqlite_urls_name_a_file() -> None:
    target = parse_database_url("sqlite:///billfold.db")
    assert (target.kind, target.sqlite_path) == ("sqlite", "billfold.db")
    assert target.sqlalchemy_url == "sqlite+aiosqlite:///billfold.db"
    assert parse_database_url("sqlite:////var/lib/b.db").sqlite_path == "/var/lib/b.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_postgresql_urls_in_every_common_spelling(scheme: str) -> None:
    target = parse_database_url(f"{scheme}://postgres@/db?host=/var/run/postgresql")
    assert target.kind == "postgresql"
    assert target.asyncpg_dsn == "postgresql://postgres@/db?host=/var/run/postgresql"
    assert target.sqlalchemy_url.startswith("postgresql+asyncpg://postgres@/db")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "mysql://x@y/z", "", "db"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl):
        parse_database_url(url)
