"""The command as a Unix tool: an option bounded as the setting it stands in for is refused
out of range as a usage error (exit 2), and output to a reader that went away ends the
command without a word."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

from billfold import cli
from billfold.kit.settings import get_settings
from cli_support import billfold


def test_ledger_verify_refuses_a_grace_period_out_of_range(tmp_path: Path) -> None:
    """As BILLFOLD_LEDGER_EXPIRY_GRACE_S does (0 to 86,400 s): a negative grace reported
    pending transfers not yet due as overdue, and the books as broken."""
    environment = {"BILLFOLD_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db"}
    assert billfold("db", "upgrade", environment=environment).returncode == 0
    for grace_s in ("-1", "86401"):
        ran = billfold("ledger", "verify", "--grace-s", grace_s, environment=environment)
        assert ran.returncode == 2, ran.stderr
        assert "--grace-s" in ran.stderr and ran.stdout == ""


def test_a_reader_that_went_away_ends_the_command_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`billfold tenant create … | head -c0`: the pipe's reader closed before the output
    came. Taken for the database's failure, it was reported as one ("Failed
    (BrokenPipeError) … (database: …)"); Typer exits 1 without a word, as `cat` does.
    Run as `billfold` is (not through CliRunner, whose standard output is no pipe)."""
    monkeypatch.setenv("BILLFOLD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    reader, writer = os.pipe()
    os.close(reader)
    said = io.StringIO()
    with contextlib.suppress(BrokenPipeError), os.fdopen(writer, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        monkeypatch.setattr(sys, "stderr", said)
        get_settings.cache_clear()
        try:
            with pytest.raises(SystemExit) as exited:
                cli.app(["tenant", "create", "Acme"])
        finally:
            get_settings.cache_clear()
    assert exited.value.code == 1
    assert said.getvalue() == ""
