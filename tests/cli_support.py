"""`billfold …` run in the test's process, seen as a subprocess would see it.

A `python -m billfold.cli` subprocess spends about 2.5 s (more on a slow machine) importing
before it does anything, and the CLI tests made dozens of them. Here the command runs
through Typer's `CliRunner` with its own environment, standard input and working
directory, with the settings read afresh (`get_settings` is cached per process) and the
CLI's consoles made afresh (Rich reads the width when a console is made). That
`python -m billfold.cli` itself starts is `tests/test_app.py`'s check.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from billfold import cli
from billfold.kit.settings import get_settings

__all__ = ["Ran", "billfold"]


@dataclass(frozen=True)
class Ran:
    """What the command left: its exit status and its two streams."""

    returncode: int
    stdout: str
    stderr: str


def billfold(
    *arguments: str,
    environment: Mapping[str, str | None],
    stdin: str | None = None,
    cwd: Path | None = None,
) -> Ran:
    """Run `billfold *arguments` with `environment` over this process's (None unsets a
    variable). An exception the command let escape is appended to `stderr` with its
    traceback and exits 1, as the interpreter would."""
    get_settings.cache_clear()
    here = Path.cwd()
    consoles = cli.console, cli.errors
    # Rich reads COLUMNS when a console is made: the CLI's module-level consoles were made
    # with this process's (pytest-xdist's workers set 80), not with `environment`'s.
    columns = environment.get("COLUMNS", os.environ.get("COLUMNS"))
    width = int(columns) if columns is not None and columns.isdigit() else None
    try:
        if cwd is not None:
            os.chdir(cwd)
        cli.console, cli.errors = Console(width=width), Console(width=width, stderr=True)
        result = CliRunner().invoke(cli.app, list(arguments), env=dict(environment), input=stdin)
    finally:
        cli.console, cli.errors = consoles
        os.chdir(here)
        get_settings.cache_clear()
    stderr = result.stderr
    escaped = result.exception
    if escaped is not None and not isinstance(escaped, SystemExit):
        stderr += "".join(traceback.format_exception(escaped))
    return Ran(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
