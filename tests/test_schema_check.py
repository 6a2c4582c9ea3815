"""`serve` and `worker` refuse a database that lacks this release's migrations (503
`schema_behind`, "run `billfold db upgrade`") instead of starting and failing request by
request with SQL errors; a database a newer release already upgraded is left to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from billfold.app import create_app
from billfold.kit.settings import Settings
from billfold.migrations import SchemaBehind, alembic_config, missing_revisions
from billfold.worker import run_worker
from cli_support import billfold


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _previous() -> str:
    """The revision before the head (whichever that is: a new migration moves both)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    previous = script.get_revision(_head()).down_revision
    assert isinstance(previous, str)
    return previous


PREVIOUS = _previous()


def test_missing_revisions_from_none_from_an_old_one_at_the_head_and_from_the_future() -> None:
    everything = missing_revisions(None)
    assert everything[0] == _head() and everything[-1].startswith("0001_")
    assert missing_revisions(PREVIOUS) == [_head()]
    assert missing_revisions(_head()) == []
    assert missing_revisions("0099_from_a_newer_release") == []


def test_serve_and_worker_refuse_a_database_behind_this_release(
    isolated_database_url: str,
) -> None:
    command.downgrade(alembic_config(isolated_database_url), PREVIOUS)
    settings = Settings(database_url=isolated_database_url)
    with pytest.raises(SchemaBehind, match="billfold db upgrade"):
        asyncio.run(run_worker(settings, drain=True))
    if isolated_database_url.startswith("sqlite"):
        # The embedded default migrates itself when `serve` starts.
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200
        return
    with pytest.raises(SchemaBehind), TestClient(create_app(settings)):
        pass
    ran = billfold(
        "worker", "--drain", environment={"BILLFOLD_DATABASE_URL": isolated_database_url}
    )
    assert ran.returncode == 1 and "(schema_behind)" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


def test_db_current_says_where_the_database_stands(isolated_database_url: str) -> None:
    environment = {"BILLFOLD_DATABASE_URL": isolated_database_url}
    at_head = billfold("db", "current", environment=environment)
    assert at_head.returncode == 0, at_head.stderr
    assert _head() in at_head.stdout
    command.downgrade(alembic_config(isolated_database_url), PREVIOUS)
    behind = billfold("db", "current", environment=environment)
    assert behind.returncode == 1
    assert PREVIOUS in behind.stdout and "billfold db upgrade" in behind.stderr


def test_db_current_prints_the_revision_on_one_line(isolated_database_url: str) -> None:
    """Not wrapped at the terminal's width (80 columns when piped): a script reads the
    revision off the end of the line."""
    environment = {"BILLFOLD_DATABASE_URL": isolated_database_url, "COLUMNS": "40"}
    for command_line in (("db", "upgrade"), ("db", "current")):
        ran = billfold(*command_line, environment=environment)
        assert ran.returncode == 0, ran.stderr
        assert len(ran.stdout.splitlines()) == 1, ran.stdout
    assert ran.stdout.rstrip().endswith(f" is at {_head()}."), ran.stdout


def test_db_upgrade_says_where_the_database_ends_up(tmp_path: Path) -> None:
    """Not the revision asked for: a database already past it stays where it is, and one
    Alembic does not know is one line, not its traceback."""
    environment = {"BILLFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    assert billfold("db", "upgrade", environment=environment).returncode == 0
    behind = billfold("db", "upgrade", PREVIOUS, environment=environment)
    assert behind.returncode == 0, behind.stderr
    assert behind.stdout.rstrip().endswith(f" is at {_head()}."), behind.stdout
    unknown = billfold("db", "upgrade", "nonsense", environment=environment)
    assert unknown.returncode == 1 and unknown.stdout == "", unknown.stdout
    assert unknown.stderr.splitlines() == [
        "Cannot upgrade to nonsense: Can't locate revision identified by 'nonsense'"
    ]


@pytest.mark.parametrize(
    "command_line",
    [
        "db current",
        "ledger verify",
        f"risk backtest active --since 2026-01-01 --mode test --tenant ten_{'0' * 32}",
    ],
)
def test_reading_commands_make_no_sqlite_file(tmp_path: Path, command_line: str) -> None:
    """A missing SQLite file is a database that cannot be used (exit 1), not a usage error,
    and a command that only reads does not leave an empty one behind."""
    path = tmp_path / "none.db"
    environment = {"BILLFOLD_DATABASE_URL": f"sqlite:///{path}"}
    ran = billfold(*command_line.split(), environment=environment)
    assert ran.returncode == 1 and "No database" in ran.stderr, ran.stderr
    assert ran.stdout == ""
    assert not path.exists()
