"""`billfold fx rates`: checks an ECB file and prints its day, or exits 1."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from billfold.cli import app

SAMPLE = Path(__file__).with_name("eurofxref-sample.xml")


def test_a_good_file_prints_its_rates() -> None:
    result = CliRunner().invoke(app, ["fx", "rates", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "2023-12-29" in result.output and "1.1050" in result.output


def test_a_bad_or_missing_file_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<?xml version='1.0'?><nope/>")
    for path in (bad, tmp_path / "missing.xml"):
        result = CliRunner().invoke(app, ["fx", "rates", str(path)])
        assert result.exit_code == 1, result.output
