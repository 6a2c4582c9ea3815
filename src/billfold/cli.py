"""The `billfold` command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from billfold import __version__
from billfold.kit.db import parse_database_url
from billfold.kit.settings import get_settings

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, help="Billfold: wallets and payments over a ledger.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
ledger_app = typer.Typer(no_args_is_help=True, help="The double-entry ledger.")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
console = Console()
errors = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"billfold {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Billfold: wallets and payments over a double-entry ledger."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the API server (creates and migrates a SQLite database on first start)."""
    import uvicorn

    settings = get_settings()
    console.print(f"Billfold {__version__} on [bold]{_describe(settings.database_url)}[/bold]")
    uvicorn.run(
        "billfold.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply database migrations up to REVISION."""
    from billfold.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    console.print(f"Database {_describe(settings.database_url)} is at {revision}.")


@ledger_app.command("verify")
def ledger_verify(
    grace_s: Annotated[
        int | None,
        typer.Option(help="Report pending transfers open this long past their timeout."),
    ] = None,
) -> None:
    """Recompute every balance from the transfers and check the books; exit 1 on a problem."""
    from billfold.ledger.ledger import Ledger

    settings = get_settings()
    target = parse_database_url(settings.database_url)
    if target.sqlite_path is not None and not Path(target.sqlite_path).exists():
        errors.print(f"No database at {target.sqlite_path}: run `billfold db upgrade` first.")
        raise typer.Exit(2)

    async def run() -> None:
        ledger = Ledger.from_settings(settings)
        await ledger.repository.open()
        try:
            with console.status("Replaying every transfer…"):
                report = await ledger.verify(
                    grace_s=settings.ledger_expiry_grace_s if grace_s is None else grace_s
                )
        finally:
            await ledger.repository.close()
        summary = (
            f"{report.accounts_checked} accounts, {report.transfers_checked} transfers,"
            f" {report.ledgers_checked} ledgers checked"
        )
        if report.ok:
            console.print(f"[green]Ledger verified[/green]: {summary}; no problems.")
            return
        table = Table("problem", "subject", "detail", title=f"{report.problems_found} problems")
        for problem in report.problems:
            table.add_row(problem.kind, problem.subject, problem.detail)
        console.print(table)
        if report.problems_found > len(report.problems):
            console.print(f"(first {len(report.problems)} of {report.problems_found} shown)")
        errors.print(f"[red]Ledger verification failed[/red]: {summary}.")
        raise typer.Exit(1)

    asyncio.run(run())


def _describe(database_url: str) -> str:
    """The database URL without a password."""
    target = parse_database_url(database_url)
    if target.kind == "sqlite":
        return f"SQLite {target.sqlite_path}"
    _scheme, _, rest = target.url.partition("://")
    credentials, at, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"PostgreSQL {user}{at}{location}" if at else f"PostgreSQL {rest}"


def main() -> None:
    app()


if __name__ == "__main__":
    main()
